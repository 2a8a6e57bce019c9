//! Colour ops with PIL's arithmetic, as torchvision applies them to PIL images (the reference
//! loader's path): `ImageEnhance` blends for brightness, contrast and saturation, HSV through
//! PIL's converters for hue, and ITU-R 601-2 luma for grayscale.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use crate::{RgbMut, simd};

mod chain;
use chain::hue;
pub(crate) use chain::{ColorChain, ColorOp};

/// PIL's `convert("L")`: ITU-R 601-2 luma in 16-bit fixed point, rounded.
#[inline(always)]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

/// PIL's `ImagingBlend` for one byte: `in1 + alpha * (in2 - in1)` in f32, clamped to [0, 255]
/// and truncated. Branch-free so that the loops around it vectorise. `alpha` is finite (every
/// public entry point checks it, [`finite_factor`]).
#[inline(always)]
fn blend(in1: f32, in2: f32, alpha: f32) -> u8 {
    blend_whole(in1, in2, alpha) as u8
}

/// [`blend`]'s value as an `i32` in [0, 255] (the chain keeps it in f32 for the next op). `in1`
/// and `in2` are whole numbers in [0, 255], `alpha` is finite.
#[inline(always)]
fn blend_whole(in1: f32, in2: f32, alpha: f32) -> i32 {
    // SAFETY: in1 and in2 are bytes (finite) and alpha is finite, so the blend is a number or
    // ±inf, never NaN (that needs inf · 0 or a NaN operand); the clamp brings it into [0, 255].
    unsafe { simd::trunc_i32((in1 + alpha * (in2 - in1)).clamp(0.0, 255.0)) }
}

/// The blend factor of a public op, refused unless finite (a NaN would survive the clamp).
///
/// # Panics
///
/// On a NaN or infinite factor (recipes are validated to finite, bounded strengths first).
fn finite_factor(op: &str, factor: f32) -> f32 {
    assert!(factor.is_finite(), "{op}: factor {factor} is not finite");
    factor
}

#[inline(always)]
fn blend_with_constant_generic(data: &mut [u8], base: f32, factor: f32) {
    for v in data {
        *v = blend(base, f32::from(*v), factor);
    }
}
simd::multiversion!(fn blend_with_constant(data: &mut [u8], base: f32, factor: f32) = blend_with_constant_generic;);

/// torchvision `adjust_brightness` on PIL: blend with black.
///
/// # Panics
///
/// On a NaN or infinite `factor`.
pub fn adjust_brightness(img: &mut RgbMut<'_>, factor: f32) {
    blend_with_constant(img.data(), 0.0, finite_factor("adjust_brightness", factor));
}

#[inline(always)]
fn luma_sum_generic(data: &[u8], sum: &mut u64) {
    // Per block of pixels, so that the u32 partial sums cannot overflow and the loop vectorises.
    for block in data.chunks(3 * 4096) {
        let s: u32 = block.chunks_exact(3).map(|p| u32::from(luma(p[0], p[1], p[2]))).sum();
        *sum += u64::from(s);
    }
}
simd::multiversion!(fn luma_sum(data: &[u8], sum: &mut u64) = luma_sum_generic;);

/// torchvision `adjust_contrast` on PIL: blend with the mean luma, rounded to an integer.
///
/// # Panics
///
/// On a NaN or infinite `factor`.
pub fn adjust_contrast(img: &mut RgbMut<'_>, factor: f32) {
    let factor = finite_factor("adjust_contrast", factor);
    let data = img.data();
    let mut sum = 0;
    luma_sum(data, &mut sum);
    blend_with_constant(data, f32::from(mean_luma(sum, data.len() / 3)), factor);
}

/// `ImageEnhance.Contrast`'s blend base: the mean of `pixels` lumas summing to `sum`, rounded.
fn mean_luma(sum: u64, pixels: usize) -> u8 {
    (sum as f64 / pixels as f64 + 0.5) as u8
}

#[inline(always)]
fn saturation_generic(data: &mut [u8], factor: f32) {
    for p in data.chunks_exact_mut(3) {
        let l = f32::from(luma(p[0], p[1], p[2]));
        for v in p {
            *v = blend(l, f32::from(*v), factor);
        }
    }
}
simd::multiversion!(fn saturation(data: &mut [u8], factor: f32) = saturation_generic;);

/// torchvision `adjust_saturation` on PIL (`ImageEnhance.Color`): blend with the pixel's luma.
///
/// # Panics
///
/// On a NaN or infinite `factor`.
pub fn adjust_saturation(img: &mut RgbMut<'_>, factor: f32) {
    saturation(img.data(), finite_factor("adjust_saturation", factor));
}

/// PIL's `rgb2hsv` for one pixel (Convert.c, after colorsys), H, S, V in 0..=255. The plain
/// transcription: [`adjust_hue`] runs a branch-free equivalent, and the tests compare the two.
#[cfg(test)]
pub(crate) fn rgb_to_hsv(r: u8, g: u8, b: u8) -> (u8, u8, u8) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    if maxc == minc {
        return (0, 0, maxc);
    }
    let cr = f32::from(maxc - minc);
    let s = cr / f32::from(maxc);
    let rc = f32::from(maxc - r) / cr;
    let gc = f32::from(maxc - g) / cr;
    let bc = f32::from(maxc - b) / cr;
    // C promotes `2.0 + rc - bc` to double (2.0 is a double literal), then stores a float.
    let h = if r == maxc {
        bc - gc
    } else if g == maxc {
        (2.0 + f64::from(rc) - f64::from(bc)) as f32
    } else {
        (4.0 + f64::from(gc) - f64::from(rc)) as f32
    };
    // C: h = fmod((h / 6.0 + 1.0), 1.0) in double, stored as float.
    let h = ((f64::from(h) / 6.0 + 1.0) % 1.0) as f32;
    let clip8 = |x: f64| (x as i32).clamp(0, 255) as u8;
    (clip8(f64::from(h) * 255.0), clip8(f64::from(s) * 255.0), maxc)
}

/// PIL's `hsv2rgb` for one pixel; the plain transcription, as [`rgb_to_hsv`].
#[cfg(test)]
pub(crate) fn hsv_to_rgb(h: u8, s: u8, v: u8) -> (u8, u8, u8) {
    if s == 0 {
        return (v, v, v);
    }
    let hf = f64::from(h) * 6.0 / 255.0;
    let i = hf.floor() as i32;
    let f = (hf - f64::from(i)) as f32;
    let fs = (f64::from(s) / 255.0) as f32;
    let vf = f64::from(v);
    let clip = |x: f64| (x.round() as i32).clamp(0, 255) as u8;
    let p = clip(vf * (1.0 - f64::from(fs)));
    // `fs * f` is a float product; `fs * (1.0 - f)` a double one (1.0 is a double literal).
    let q = clip(vf * (1.0 - f64::from(fs * f)));
    let t = clip(vf * (1.0 - f64::from(fs) * (1.0 - f64::from(f))));
    match i % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

const BLOCK: usize = 64;

/// PIL's hsv2rgb splits `h * 6.0 / 255.0` (double) into the sector `floor` and the remainder
/// stored as float. Here in f32 only: `6 h` and `6 h - 255 i` are exact integers, the floor never
/// lies near a step (`6 h / 255` is a multiple of 1/255), and the remainder is one correctly
/// rounded f32 division — the same f32 as PIL's for all 256 bytes (tested).
#[inline(always)]
fn hue_sector(h: i32) -> (i32, f32) {
    let six = h as f32 * 6.0;
    // SAFETY: h is a byte (0..=255, the callers pass H of a pixel), so the value is in [0, 7).
    let i = unsafe { simd::trunc_i32((six + 0.5) * (1.0 / 255.0)) };
    (i, (six - 255.0 * i as f32) / 255.0)
}

/// PIL's `s / 255.0` stored as float, as one f32 division (equal for all 256 bytes, tested; a
/// multiplication by 1/255 is not).
#[inline(always)]
fn unit_byte(x: i32) -> f32 {
    x as f32 / 255.0
}

/// C's `round` (half away from zero) of `0 <= x < 256` as `trunc(x + 0.5)` in f32: exact unless
/// `x + 0.5` itself rounds up to a whole number, which no input of [`hsv_lanes_to_rgb`] does (its
/// test covers every (h, s, v)).
#[inline(always)]
fn round_half_up(x: f32) -> f32 {
    // SAFETY: the callers pass products of bytes and unit fractions, in [0, 256).
    unsafe { simd::trunc_i32(x + 0.5) as f32 }
}

#[inline(always)]
fn max3(a: f32, b: f32, c: f32) -> f32 {
    // Plain comparisons: no NaN occurs, and f32::max's NaN rules cost instructions.
    let m = if a > b { a } else { b };
    if m > c { m } else { c }
}

#[inline(always)]
fn min3(a: f32, b: f32, c: f32) -> f32 {
    let m = if a < b { a } else { b };
    if m < c { m } else { c }
}

/// [`rgb_to_hsv`] for one pixel of whole-number channels, branch-free (selects, no libm, two
/// divisions) so that LLVM vectorises the loop around it: returns H scaled to its sector range
/// (-1, 5] for [`hue_byte`] to finish, S as an integer, V as the f32 max. The selects are
/// written one condition at a time: at AVX2 (16 vector registers) a mask kept alive across
/// several selects costs spills. PIL mixes float and double; this runs in f32 throughout, each
/// step chosen so that the bytes are PIL's (the tests check every colour).
#[inline(always)]
fn rgb_lanes_to_hsv(rv: f32, gv: f32, bv: f32) -> (f32, i32, f32) {
    let maxc = max3(rv, gv, bv);
    let minc = min3(rv, gv, bv);
    let cr = maxc - minc;
    // A grey pixel (cr = 0) gets s = 0 through the same arithmetic: 0 / max(maxc, 1).
    let s = cr / if maxc > 1.0 { maxc } else { 1.0 };
    // (maxc - x) / cr is exactly 0 for the max channel and 1 for the min one: only the middle
    // channel needs the division.
    let mid = rv + gv + bv - maxc - minc;
    let d = (maxc - mid) / if cr > 1.0 { cr } else { 1.0 };
    // PIL: h = bc - gc (r max), 2.0 + rc - bc (g max), 4.0 + gc - rc (b max), in double, stored
    // as float. Of the two ratios one belongs to the min channel (1) and the other is the
    // middle's (d), so h is a whole number plus or minus d: one f32 rounding, PIL's. Which one
    // follows from the max channel (PIL's order r, g, b) and whether r (or g) is the min; ties
    // give d = 0 or 1 and the same h either way. A grey pixel (cr = 0) has h = 0.
    let mut h = 1.0 - d;
    if rv == maxc && gv == minc {
        h = d - 1.0;
    }
    if rv != maxc && gv == maxc {
        h = if rv == minc { 3.0 - d } else { 1.0 + d };
    }
    if rv != maxc && gv != maxc {
        h = if rv == minc { 3.0 + d } else { 5.0 - d };
    }
    if cr == 0.0 {
        h = 0.0;
    }
    // s in [0, 1]: the product is in [0, 255].
    // SAFETY: finite and in [0, 255], as just said.
    (h, unsafe { simd::trunc_i32(s * 255.0) }, maxc)
}

/// The last step of [`rgb_lanes_to_hsv`]: H as a byte from the sector-scaled `h` in (-1, 5].
#[inline(always)]
fn hue_byte(h: f32) -> i32 {
    // PIL: `fmod(h / 6.0 + 1.0, 1.0)` in double, stored as float. One correctly rounded f32
    // division (plus 1 for the negative ones) gives the same byte below for every colour
    // (tested; multiplying by 1/6 does not).
    let sixth = h / 6.0;
    let h = if sixth < 0.0 { sixth + 1.0 } else { sixth };
    // SAFETY: h in [0, 1), so the product is finite and in [0, 255).
    unsafe { simd::trunc_i32(h * 255.0) }
}

/// [`hsv_to_rgb`] for one pixel (H and S as integers 0..=255, V whole in [0, 255]), branch-free,
/// as its two halves [`sector_fraction`] and [`sector_to_rgb`] (which the hue loop runs as
/// separate passes). S = 0 needs no case of its own: then p = q = t = v.
#[cfg(test)]
fn hsv_lanes_to_rgb(h: i32, s: i32, v: f32) -> (f32, f32, f32) {
    let (i, x) = sector_fraction(h);
    sector_to_rgb(i, x, s, v)
}

/// The first half of [`hsv_lanes_to_rgb`]: H's sector `i` and the fraction `x` that the sector's
/// q or t takes — PIL's q = v (1 - s f) serves the odd sectors and t = v (1 - s (1 - f)) the
/// even ones, so each pixel needs one of them.
#[inline(always)]
fn sector_fraction(h: i32) -> (i32, f32) {
    let (i, f) = hue_sector(h);
    (i, if i & 1 == 1 { f } else { 1.0 - f })
}

/// The second half of [`hsv_lanes_to_rgb`], from [`sector_fraction`]'s `i` and `x`.
#[inline(always)]
fn sector_to_rgb(i: i32, x: f32, s: i32, v: f32) -> (f32, f32, f32) {
    let fs = unit_byte(s);
    let p = round_half_up(v * (1.0 - fs));
    let m = round_half_up(v * (1.0 - fs * x));
    // Sectors 0..=5 as PIL's switch on i % 6; i = 6 (h = 255, f = 0) is sector 0. Each sector
    // sets the two channels that are not p, one mask at a time (few live registers at AVX2).
    let (mut r, mut g, mut b) = (p, p, p);
    if i == 0 || i == 6 {
        (r, g) = (v, m);
    }
    if i == 1 {
        (r, g) = (m, v);
    }
    if i == 2 {
        (g, b) = (v, m);
    }
    if i == 3 {
        (g, b) = (m, v);
    }
    if i == 4 {
        (r, b) = (m, v);
    }
    if i == 5 {
        (r, b) = (v, m);
    }
    (r, g, b)
}

/// [`rgb_to_hsv`], shift H as a wrapping byte, [`hsv_to_rgb`] for one block of pixels held as
/// planes.
#[inline(always)]
fn hue_block(r: &mut [f32; BLOCK], g: &mut [f32; BLOCK], b: &mut [f32; BLOCK], shift: i32) {
    // Three passes over the block rather than one: the round trip is one dependency chain
    // through three divisions end to end, and at AVX2 the out-of-order window overlapped too
    // few of its iterations (hue was latency-bound). Each pass's chain is a third as long, its
    // results wait in L1: hue 195 -> ~135 us per 224² view on an AVX2-only EPYC.
    let (mut hs, mut ss, mut xs) = ([0i32; BLOCK], [0i32; BLOCK], [0f32; BLOCK]);
    for k in 0..BLOCK {
        (xs[k], ss[k], r[k]) = rgb_lanes_to_hsv(r[k], g[k], b[k]);
    }
    for k in 0..BLOCK {
        (hs[k], xs[k]) = sector_fraction((hue_byte(xs[k]) + shift) & 255);
    }
    for k in 0..BLOCK {
        (r[k], g[k], b[k]) = sector_to_rgb(hs[k], xs[k], ss[k], r[k]);
    }
}

/// torchvision `adjust_hue` on PIL: to HSV, add `int32(factor * 255)` to H as a wrapping u8,
/// back to RGB. `factor` in [-0.5, 0.5].
pub fn adjust_hue(img: &mut RgbMut<'_>, factor: f32) {
    hue(img.data(), hue_shift(factor));
}

/// torchvision's shift of H for a hue factor: `int32(factor * 255)` as a wrapping byte.
fn hue_shift(factor: f32) -> u8 {
    ((f64::from(factor) * 255.0) as i32) as u8
}

/// The plain per-pixel transcription of [`adjust_hue`], for the equivalence test.
#[cfg(test)]
pub(crate) fn adjust_hue_reference(data: &mut [u8], factor: f32) {
    let shift = ((f64::from(factor) * 255.0) as i32) as u8;
    for p in data.chunks_exact_mut(3) {
        let (h, s, v) = rgb_to_hsv(p[0], p[1], p[2]);
        let (r, g, b) = hsv_to_rgb(h.wrapping_add(shift), s, v);
        p.copy_from_slice(&[r, g, b]);
    }
}

#[inline(always)]
fn grayscale_generic(data: &mut [u8]) {
    for p in data.chunks_exact_mut(3) {
        let l = luma(p[0], p[1], p[2]);
        p.copy_from_slice(&[l, l, l]);
    }
}
simd::multiversion!(fn gray(data: &mut [u8]) = grayscale_generic;);

/// torchvision `rgb_to_grayscale(num_output_channels=3)` on PIL: luma in all three channels.
pub fn grayscale(img: &mut RgbMut<'_>) {
    gray(img.data());
}

/// torchvision `ColorJitter`: strengths as torchvision takes them; a zero strength leaves that
/// adjustment out. Brightness, contrast and saturation factors are drawn from
/// U(max(0, 1 - s), 1 + s), hue from U(-h, h), and the four run in a random order per call.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColorJitter {
    /// Brightness strength.
    pub brightness: f64,
    /// Contrast strength.
    pub contrast: f64,
    /// Saturation strength.
    pub saturation: f64,
    /// Hue strength, at most 0.5.
    pub hue: f64,
}

/// The factors one `ColorJitter` call drew, in the order they were applied.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct JitterParams {
    /// Order of application: 0 brightness, 1 contrast, 2 saturation, 3 hue.
    pub order: [u8; 4],
    /// Brightness factor, if that adjustment is on.
    pub brightness: Option<f32>,
    /// Contrast factor.
    pub contrast: Option<f32>,
    /// Saturation factor.
    pub saturation: Option<f32>,
    /// Hue shift in [-0.5, 0.5].
    pub hue: Option<f32>,
}

impl ColorJitter {
    /// Draws the order and factors (torchvision `ColorJitter.get_params`).
    pub fn sample(&self, rng: &mut Rng) -> JitterParams {
        let order = rng.permutation::<4>();
        let mut factor =
            |s: f64| (s > 0.0).then(|| rng.uniform((1.0 - s).max(0.0), 1.0 + s) as f32);
        let brightness = factor(self.brightness);
        let contrast = factor(self.contrast);
        let saturation = factor(self.saturation);
        let hue = (self.hue > 0.0).then(|| rng.uniform(-self.hue, self.hue) as f32);
        JitterParams { order, brightness, contrast, saturation, hue }
    }
}

impl JitterParams {
    /// Applies the drawn adjustments in their order.
    ///
    /// # Panics
    ///
    /// On a NaN or infinite factor.
    pub fn apply(&self, img: &mut RgbMut<'_>) {
        let mut chain = ColorChain::new();
        self.push_to(&mut chain, img);
        chain.run(img);
    }

    /// The drawn adjustments in their order, onto `chain` (which runs them on `img` when full).
    pub(crate) fn push_to(&self, chain: &mut ColorChain, img: &mut RgbMut<'_>) {
        for op in self.order {
            let op = match op {
                0 => self.brightness.map(ColorOp::Brightness),
                1 => self.contrast.map(ColorOp::Contrast),
                2 => self.saturation.map(ColorOp::Saturation),
                _ => self.hue.map(|f| ColorOp::Hue(hue_shift(f))),
            };
            if let Some(op) = op {
                chain.push(op, img);
            }
        }
    }

    /// The drawn adjustments in their order, one op at a time (the chain's reference).
    #[cfg(test)]
    pub(crate) fn apply_one_by_one(&self, img: &mut RgbMut<'_>) {
        for op in self.order {
            match op {
                0 => self.brightness.inspect(|&f| adjust_brightness(img, f)),
                1 => self.contrast.inspect(|&f| adjust_contrast(img, f)),
                2 => self.saturation.inspect(|&f| adjust_saturation(img, f)),
                _ => self.hue.inspect(|&f| adjust_hue(img, f)),
            };
        }
    }
}

#[cfg(test)]
mod tests;
