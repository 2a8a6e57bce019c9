//! The photometric steps of the two-view recipe on the trainer's device (`augment_on =
//! "device"`): colour jitter in its drawn order, grayscale, PIL's box blur and solarize, applied
//! per sample from the parameters the loader drew (`twoview_pipeline::augment::device` writes
//! them; the layout is repeated below). Every op is a transcription of the pipeline's PIL-exact
//! CPU op into tensor arithmetic with the same roundings (f32 for blends and HSV, f64 for the
//! blur's 24-bit fixed point), so the bytes are the CPU path's (tests/integration/
//! device_photometric.rs compares them on the CPU device).
//!
//! Parameters: `[B][view 2][step MAX_STEPS][8]` f32 on the host; one step is `[kind, a, b, c,
//! d, e, 0, 0]`: kind 0 nothing, 1 jitter (a = order o0 + 4 o1 + 16 o2 + 64 o3 with 0
//! brightness, 1 contrast, 2 saturation, 3 hue; b, c, d factors; e hue shift byte; NaN = left
//! out), 2 grayscale, 3 box blur (a radius, b inner weight, c edge weight), 4 solarize (a
//! threshold). Which samples an op touches is known on the host, so each op runs only on its
//! samples (`index_select` / `index_copy`), and nothing is read back from the device.

use tch::{Device, Kind, TchError, Tensor};

/// Recipe steps per view (the pipeline's `MAX_STEPS`).
pub const MAX_STEPS: usize = 8;
/// Floats per step, per view, per sample.
pub const STEP_FLOATS: usize = 8;
pub const VIEW_FLOATS: usize = MAX_STEPS * STEP_FLOATS;
pub const SAMPLE_FLOATS: usize = 2 * VIEW_FLOATS;

const JITTER: f32 = 1.0;
const GRAYSCALE: f32 = 2.0;
const BOX_BLUR: f32 = 3.0;
const SOLARIZE: f32 = 4.0;

type R<T> = Result<T, TchError>;

/// Applies the deferred steps in `params` (`B * SAMPLE_FLOATS`) to `views`, `[B, 2, H, W, 3]`
/// u8 on any device; returns the augmented views in the same layout. Views whose steps are all
/// kind 0 come back as they are.
pub fn apply(views: &Tensor, params: &[f32]) -> Result<Tensor, crate::Error> {
    let bad = |message: String| crate::Error::Libtorch { op: "photometric", message };
    let size = views.size();
    if size.len() != 5 || size[1] != 2 || size[4] != 3 || views.kind() != Kind::Uint8 {
        return Err(bad(format!(
            "views must be [B, 2, H, W, 3] u8, got {size:?} {:?}",
            views.kind()
        )));
    }
    let b = size[0] as usize;
    if params.len() != b * SAMPLE_FLOATS {
        return Err(bad(format!(
            "{} parameters for {b} samples (want {} each)",
            params.len(),
            SAMPLE_FLOATS
        )));
    }
    if params.chunks_exact(STEP_FLOATS).all(|s| s[0] == 0.0) {
        return Ok(views.shallow_clone());
    }
    run(views, params, b).map_err(|e| bad(e.to_string()))
}

fn run(views: &Tensor, params: &[f32], b: usize) -> R<Tensor> {
    let device = views.device();
    // [B, 2, 3, H, W] f32, whole numbers 0..=255.
    let mut x = views.f_permute([0, 1, 4, 2, 3])?.f_to_kind(Kind::Float)?.f_contiguous()?;
    for v in 0..2 {
        let mut xv = x.f_select(1, v as i64)?.f_contiguous()?;
        for s in 0..MAX_STEPS {
            let at = |i: usize| {
                &params[i * SAMPLE_FLOATS + v * VIEW_FLOATS + s * STEP_FLOATS..][..STEP_FLOATS]
            };
            let of = |k: f32| (0..b).filter(|&i| at(i)[0] == k).collect::<Vec<_>>();
            let jitter = of(JITTER);
            if !jitter.is_empty() {
                xv = jitter_step(&xv, &jitter, &at, device)?;
            }
            let gray = of(GRAYSCALE);
            if !gray.is_empty() {
                xv = on(&xv, &gray, device, grayscale)?;
            }
            let blur = of(BOX_BLUR);
            if !blur.is_empty() {
                let taps: Vec<[f32; 3]> =
                    blur.iter().map(|&i| [at(i)[1], at(i)[2], at(i)[3]]).collect();
                xv = on(&xv, &blur, device, |t| box_blur(t, &taps))?;
            }
            let sol = of(SOLARIZE);
            if !sol.is_empty() {
                let th: Vec<f32> = sol.iter().map(|&i| at(i)[1]).collect();
                xv = on(&xv, &sol, device, |t| solarize(t, &per_sample(&th, device)?))?;
            }
        }
        x = x.f_select_scatter(&xv, 1, v as i64)?;
    }
    x.f_to_kind(Kind::Uint8)?.f_permute([0, 1, 3, 4, 2])?.f_contiguous()
}

/// `f` on the samples `idx` of `x` (`[B, 3, H, W]`), the others unchanged.
fn on(
    x: &Tensor,
    idx: &[usize],
    device: Device,
    f: impl FnOnce(&Tensor) -> R<Tensor>,
) -> R<Tensor> {
    if idx.len() == x.size()[0] as usize {
        return f(x);
    }
    let index =
        Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>()).f_to(device)?;
    let part = f(&x.f_index_select(0, &index)?)?;
    x.f_index_copy(0, &index, &part)
}

/// Per-sample scalars as `[n, 1, 1, 1]` f32 on `device`.
fn per_sample(v: &[f32], device: Device) -> R<Tensor> {
    Tensor::from_slice(v).f_to(device)?.f_view([-1, 1, 1, 1])
}

/// Colour jitter: at each of the four positions of the drawn orders, each adjustment on the
/// samples that run it there.
fn jitter_step<'p>(
    x: &Tensor,
    idx: &[usize],
    at: &impl Fn(usize) -> &'p [f32],
    device: Device,
) -> R<Tensor> {
    let mut x = x.shallow_clone();
    for pos in 0..4 {
        for op in 0..4u32 {
            let mut who = Vec::new();
            let mut value = Vec::new();
            for &i in idx {
                let p = at(i);
                let order = p[1] as u32;
                let v = p[2 + op as usize];
                if (order >> (2 * pos)) & 3 == op && !v.is_nan() {
                    who.push(i);
                    value.push(v);
                }
            }
            if who.is_empty() {
                continue;
            }
            let f = per_sample(&value, device)?;
            x = on(&x, &who, device, |t| match op {
                0 => brightness(t, &f),
                1 => contrast(t, &f),
                2 => saturation(t, &f),
                _ => hue(t, &f),
            })?;
        }
    }
    Ok(x)
}

/// PIL's `ImagingBlend` per byte: `trunc(clamp(in1 + alpha * (in2 - in1), 0, 255))` in f32.
fn blend(in1: &Tensor, in2: &Tensor, alpha: &Tensor) -> R<Tensor> {
    in1.f_add(&alpha.f_mul(&in2.f_sub(in1)?)?)?.f_clamp(0.0, 255.0)?.f_trunc()
}

fn brightness(x: &Tensor, f: &Tensor) -> R<Tensor> {
    // blend with black: 0 + f * (x - 0) is f * x exactly.
    x.f_mul(f)?.f_clamp(0.0, 255.0)?.f_trunc()
}

/// PIL's `convert("L")` (ITU-R 601-2 in 16-bit fixed point, rounded) as `[n, 1, H, W]`: every
/// partial sum is a whole number below 2^24, so f32 holds it exactly.
fn luma(x: &Tensor) -> R<Tensor> {
    let c = |k: i64| x.f_narrow(1, k, 1);
    let sum = c(0)?.f_mul_scalar(19595.0)?.f_add(&c(1)?.f_mul_scalar(38470.0)?)?;
    let sum = sum.f_add(&c(2)?.f_mul_scalar(7471.0)?)?.f_add_scalar(32768.0)?;
    sum.f_div_scalar(65536.0)?.f_floor()
}

fn contrast(x: &Tensor, f: &Tensor) -> R<Tensor> {
    let l = luma(x)?.f_to_kind(Kind::Double)?;
    let n = (l.size()[2] * l.size()[3]) as f64;
    // (sum as f64 / n + 0.5) as u8, per sample.
    let mean = l.f_sum_dim_intlist([1i64, 2, 3].as_slice(), true, Kind::Double)?;
    let mean = mean.f_div_scalar(n)?.f_add_scalar(0.5)?.f_trunc()?.f_to_kind(Kind::Float)?;
    blend(&mean, x, f)
}

fn saturation(x: &Tensor, f: &Tensor) -> R<Tensor> {
    blend(&luma(x)?, x, f)
}

fn grayscale(x: &Tensor) -> R<Tensor> {
    luma(x)?.f_expand([-1, 3, -1, -1], false)?.f_contiguous()
}

fn solarize(x: &Tensor, threshold: &Tensor) -> R<Tensor> {
    x.f_where_self(&x.f_lt_tensor(threshold)?, &x.f_neg()?.f_add_scalar(255.0)?)
}

/// `if c { a } else { b }` elementwise.
fn sel(c: &Tensor, a: &Tensor, b: &Tensor) -> R<Tensor> {
    a.f_where_self(c, b)
}

/// PIL's hue shift (`F.adjust_hue`): RGB → HSV bytes, H + shift wrapping, HSV → RGB; the
/// pipeline's branch-free f32 transcription of Convert.c, op for op.
fn hue(x: &Tensor, shift: &Tensor) -> R<Tensor> {
    let c = |k: i64| x.f_narrow(1, k, 1);
    let (r, g, b) = (c(0)?, c(1)?, c(2)?);
    let maxc = r.f_maximum(&g)?.f_maximum(&b)?;
    let minc = r.f_minimum(&g)?.f_minimum(&b)?;
    let cr = maxc.f_sub(&minc)?;
    let one = |t: &Tensor| -> R<Tensor> { t.f_clamp_min(1.0) }; // x > 1 ? x : 1, for whole x >= 0
    let s = cr.f_div(&one(&maxc)?)?;
    let mid = r.f_add(&g)?.f_add(&b)?.f_sub(&maxc)?.f_sub(&minc)?;
    let d = maxc.f_sub(&mid)?.f_div(&one(&cr)?)?;
    let zeros = d.f_zeros_like()?;
    let ones = d.f_ones_like()?;
    let ratio = |t: &Tensor| -> R<Tensor> {
        sel(&t.f_eq_tensor(&maxc)?, &zeros, &sel(&t.f_eq_tensor(&minc)?, &ones, &d)?)
    };
    let (rc, gc, bc) = (ratio(&r)?, ratio(&g)?, ratio(&b)?);
    let whole = |t: &Tensor| -> R<Tensor> { t.f_eq(0.0)?.f_logical_or(&t.f_eq(1.0)?) };
    let h_g = sel(
        &whole(&bc)?,
        &bc.f_neg()?.f_add_scalar(2.0)?.f_add(&rc)?,
        &rc.f_add_scalar(2.0)?.f_sub(&bc)?,
    )?;
    let h_b = sel(
        &whole(&rc)?,
        &rc.f_neg()?.f_add_scalar(4.0)?.f_add(&gc)?,
        &gc.f_add_scalar(4.0)?.f_sub(&rc)?,
    )?;
    let h =
        sel(&r.f_eq_tensor(&maxc)?, &bc.f_sub(&gc)?, &sel(&g.f_eq_tensor(&maxc)?, &h_g, &h_b)?)?;
    let sixth = h.f_div_scalar(6.0)?;
    let h = sel(&sixth.f_lt(0.0)?, &sixth.f_add_scalar(1.0)?, &sixth)?;
    let hb = h.f_mul_scalar(255.0)?.f_trunc()?;
    let sb = s.f_mul_scalar(255.0)?.f_trunc()?;
    // Shift as a wrapping byte.
    let hb = hb.f_add(shift)?.f_remainder(256.0)?;
    // hsv → rgb.
    let six = hb.f_mul_scalar(6.0)?;
    let inv255 = f64::from(1.0f32 / 255.0);
    let i = six.f_add_scalar(0.5)?.f_mul_scalar(inv255)?.f_trunc()?;
    let f = six.f_sub(&i.f_mul_scalar(255.0)?)?.f_div_scalar(255.0)?;
    let fs = sb.f_div_scalar(255.0)?;
    let v = &maxc;
    let round = |t: Tensor| -> R<Tensor> { t.f_add_scalar(0.5)?.f_trunc() };
    let p = round(v.f_mul(&fs.f_neg()?.f_add_scalar(1.0)?)?)?;
    let q = round(v.f_mul(&fs.f_mul(&f)?.f_neg()?.f_add_scalar(1.0)?)?)?;
    let t =
        round(v.f_mul(&fs.f_mul(&f.f_neg()?.f_add_scalar(1.0)?)?.f_neg()?.f_add_scalar(1.0)?)?)?;
    let is = |k: f64| i.f_eq(k);
    let ro = sel(
        &is(0.0)?.f_logical_or(&i.f_ge(5.0)?)?,
        v,
        &sel(&is(1.0)?, &q, &sel(&is(4.0)?, &t, &p)?)?,
    )?;
    let go = sel(
        &is(1.0)?.f_logical_or(&is(2.0)?)?,
        v,
        &sel(&is(0.0)?.f_logical_or(&is(6.0)?)?, &t, &sel(&is(3.0)?, &q, &p)?)?,
    )?;
    let bo =
        sel(&is(3.0)?.f_logical_or(&is(4.0)?)?, v, &sel(&is(2.0)?, &t, &sel(&is(5.0)?, &q, &p)?)?)?;
    Tensor::f_cat(&[ro, go, bo], 1)
}

/// PIL's `GaussianBlur` (BoxBlur.c): three horizontal then three vertical box passes of
/// integer radius `r` with inner weight `ww` and edge weight `fw` (24-bit fixed point), edges
/// replicated, each pass rounded to a byte. In f64 the fixed-point sums are exact.
fn box_blur(x: &Tensor, taps: &[[f32; 3]]) -> R<Tensor> {
    let (n, h, w) = (x.size()[0], x.size()[2], x.size()[3]);
    let rmax = taps.iter().map(|t| t[0] as i64).max().unwrap_or(0);
    let k = 2 * rmax + 3;
    let mut kernel = vec![0f64; n as usize * k as usize];
    for (row, t) in kernel.chunks_exact_mut(k as usize).zip(taps) {
        let (r, ww, fw) = (t[0] as i64, f64::from(t[1]), f64::from(t[2]));
        let c = rmax + 1;
        for d in -r..=r {
            row[(c + d) as usize] = ww;
        }
        row[(c - r - 1) as usize] = fw;
        row[(c + r + 1) as usize] = fw;
    }
    let kernel = Tensor::from_slice(&kernel).f_to(x.device())?;
    let pad = rmax + 1;
    let round24 = |t: Tensor| -> R<Tensor> {
        t.f_add_scalar(8_388_608.0)?.f_div_scalar(16_777_216.0)?.f_floor()
    };
    // Horizontal: every channel row of a sample is a row of one group.
    let kh = kernel.f_view([n, 1, 1, k])?;
    let mut y = x.f_to_kind(Kind::Double)?.f_reshape([1, n, 3 * h, w])?;
    for _ in 0..3 {
        let padded = y.f_replication_pad2d([pad, pad, 0, 0])?;
        y = round24(padded.f_conv2d::<Tensor>(&kh, None, [1, 1], [0, 0], [1, 1], n)?)?;
    }
    // Vertical: one group per (sample, channel).
    let kv = kernel.f_view([n, 1, k, 1])?.f_repeat_interleave_self_int(3, 0, None)?;
    let mut y = y.f_reshape([1, n * 3, h, w])?;
    for _ in 0..3 {
        let padded = y.f_replication_pad2d([0, 0, pad, pad])?;
        y = round24(padded.f_conv2d::<Tensor>(&kv, None, [1, 1], [0, 0], [1, 1], n * 3)?)?;
    }
    y.f_reshape([n, 3, h, w])?.f_to_kind(Kind::Float)
}
