//! Gaussian blur. The reference (moco-v3 `loader.GaussianBlur`) calls PIL's
//! `ImageFilter.GaussianBlur(radius=sigma)`, which is not a Gaussian kernel but an *extended box
//! blur*: three box passes per axis with a fractional radius chosen to match the variance
//! (Gwosdek et al., SSVM 2011), each pass rounded to u8. [`BlurMethod::PilBox`] reproduces it, and
//! its cost does not grow with sigma. [`BlurMethod::Gaussian`] is a true separable Gaussian.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use crate::{RgbMut, simd};

/// Which blur a [`GaussianBlur`] runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlurMethod {
    /// PIL's extended box blur, three passes per axis (what the reference computes).
    #[default]
    PilBox,
    /// A sampled Gaussian kernel of radius ceil(3 sigma), edges replicated.
    Gaussian,
}

/// Blur with sigma ~ U(sigma.0, sigma.1) (moco-v3 `GaussianBlur([.1, 2.])`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianBlur {
    /// Range of the standard deviation, in pixels.
    pub sigma: (f64, f64),
    /// Box approximation (as the reference) or a true Gaussian.
    #[serde(default)]
    pub method: BlurMethod,
}

impl GaussianBlur {
    /// Draws sigma (Python's `random.uniform`).
    pub fn sample(&self, rng: &mut Rng) -> f32 {
        rng.uniform(self.sigma.0, self.sigma.1) as f32
    }

    /// Blurs `img` with the given sigma; `scratch` is reused between calls.
    pub fn apply(&self, img: &mut RgbMut<'_>, sigma: f32, scratch: &mut BlurScratch) {
        match self.method {
            BlurMethod::PilBox => pil_gaussian_blur(img, sigma, scratch),
            BlurMethod::Gaussian => true_gaussian_blur(img, sigma, scratch),
        }
    }
}

/// PIL's `_gaussian_blur_radius`: the fractional box radius whose `passes`-fold repetition has
/// variance sigma². Float arithmetic as in BoxBlur.c.
pub(crate) fn box_radius(sigma: f32, passes: u32) -> f32 {
    let sigma2 = sigma * sigma / passes as f32;
    let big_l = (12.0 * f64::from(sigma2) + 1.0).sqrt() as f32;
    let l = ((f64::from(big_l) - 1.0) / 2.0).floor() as f32;
    let mut a = (2.0 * l + 1.0) * (l * (l + 1.0) - 3.0 * sigma2);
    a /= 6.0 * (sigma2 - (l + 1.0) * (l + 1.0));
    l + a
}

/// Fixed-point weights of a box of fractional radius: `ww` for each of the 2r+1 inner taps,
/// `fw` for the two taps at distance r+1 (24-bit fixed point, as BoxBlur.c).
pub(crate) fn box_weights(radius: f32) -> (usize, u32, u32) {
    let r = radius as usize;
    // Float (not double) division, as BoxBlur.c: `(UINT32)(1 << 24) / (floatRadius * 2 + 1)`.
    let ww = ((1u32 << 24) as f32 / (radius * 2.0 + 1.0)) as u32;
    let fw = ((1u32 << 24) - (r as u32 * 2 + 1) * ww) / 2;
    (r, ww, fw)
}

/// Reusable buffers of the blurs: a worker keeps one, so blurring allocates nothing once warm.
#[derive(Default)]
pub struct BlurScratch {
    a: Vec<u8>,
    b: Vec<u8>,
    acc: Vec<u32>,
}

/// Box radii up to this run the horizontal passes directly along the rows (`2r + 3` taps per
/// byte, all three passes of a row in L1); larger ones slide a running sum down the columns of the
/// transposed image, whose cost does not grow with the radius. sigma <= 2 (the MoCo v3 recipes)
/// gives r <= 1.
const DIRECT_MAX_RADIUS: usize = 3;

/// PIL `ImageFilter.GaussianBlur(sigma)` on an RGB image: 3 horizontal box passes, then 3
/// vertical ones, each rounded to u8 — as BoxBlur.c. Small radii sum their taps directly (rows
/// in L1, then whole rows of taps down the columns); larger ones slide a running sum down the
/// columns, vectorised across a whole row, the horizontal passes on the transposed image.
pub fn pil_gaussian_blur(img: &mut RgbMut<'_>, sigma: f32, scratch: &mut BlurScratch) {
    const PASSES: usize = 3;
    if sigma <= 0.0 {
        return;
    }
    let (r, ww, fw) = box_weights(box_radius(sigma, PASSES as u32));
    let (w, h) = (img.width() as usize, img.height() as usize);
    let data = img.data();
    let BlurScratch { a, b, acc } = scratch;
    a.resize(data.len().max((w + 2 * (r + 1)) * 3), 0);
    b.resize(a.len(), 0);
    if r <= DIRECT_MAX_RADIUS {
        direct_rows(r, data, w, ww, fw, a, b);
        direct_columns(r, data, w * 3, ww, fw, a, b);
    } else {
        acc.resize(w.max(h) * 3, 0);
        // Horizontal on the transpose (w rows of h pixels): data -> a, then a -> b -> a -> b.
        transpose_rgb(data, a, w, h);
        box_columns(a, b, h * 3, w, r, ww, fw, acc);
        box_columns(b, a, h * 3, w, r, ww, fw, acc);
        box_columns(a, b, h * 3, w, r, ww, fw, acc);
        transpose_rgb(b, data, h, w);
        // Vertical: data -> a -> b -> data.
        let (a, b) = (&mut a[..data.len()], &mut b[..data.len()]);
        box_columns(data, a, w * 3, h, r, ww, fw, acc);
        box_columns(a, b, w * 3, h, r, ww, fw, acc);
        box_columns(b, data, w * 3, h, r, ww, fw, acc);
    }
}

/// BoxBlur.c's sum for radius `R`, without sliding: `out[i] = ww * (2R + 1 inner taps) + fw *
/// (the two taps R + 1 away)`, rounded. Every slice has `out`'s length (the unused inner slots
/// repeat a used one), so the loop has no bounds checks and vectorises.
#[inline(always)]
fn box_taps<const R: usize>(
    inner: &[&[u8]; 2 * DIRECT_MAX_RADIUS + 1],
    (before, after): (&[u8], &[u8]),
    out: &mut [u8],
    ww: u32,
    fw: u32,
) {
    const { assert!(R <= DIRECT_MAX_RADIUS) };
    let n = out.len();
    let (before, after) = (&before[..n], &after[..n]);
    let inner: [&[u8]; 2 * DIRECT_MAX_RADIUS + 1] = std::array::from_fn(|k| &inner[k][..n]);
    for i in 0..n {
        let mut sum = 0;
        for taps in &inner[..2 * R + 1] {
            sum += u32::from(taps[i]);
        }
        let edges = u32::from(before[i]) + u32::from(after[i]);
        out[i] = round24(sum * ww + edges * fw);
    }
}

/// One horizontal pass over a row padded with `R + 1` replicated pixels on each side (`src`,
/// `(w + 2R + 2) * 3` bytes) into `dst` (`w * 3` bytes).
#[inline(always)]
fn box_row<const R: usize>(src: &[u8], dst: &mut [u8], ww: u32, fw: u32) {
    let n = dst.len();
    let tap = |k: usize| &src[3 * k..3 * k + n];
    let inner = std::array::from_fn(|k| tap(1 + k.min(2 * R)));
    box_taps::<R>(&inner, (tap(0), tap(2 * R + 2)), dst, ww, fw);
}

/// One vertical pass from `src` into `dst` (rows of `stride` bytes), edges replicated.
#[inline(always)]
fn box_column_rows<const R: usize>(src: &[u8], dst: &mut [u8], stride: usize, ww: u32, fw: u32) {
    let h = src.len() / stride;
    let row = |y: isize| {
        let y = y.clamp(0, h as isize - 1) as usize;
        &src[y * stride..(y + 1) * stride]
    };
    let r = R as isize;
    for (y, out) in dst.chunks_exact_mut(stride).enumerate() {
        let y = y as isize;
        let inner = std::array::from_fn(|k| row(y - r + k.min(2 * R) as isize));
        box_taps::<R>(&inner, (row(y - r - 1), row(y + r + 1)), out, ww, fw);
    }
}

/// Fills the `pad` pixels on each side of the `n` bytes in the middle of `padded` with copies of
/// the first and last pixel (edges replicated, as BoxBlur.c clamps).
#[inline(always)]
fn replicate_edges(padded: &mut [u8], pad: usize, n: usize) {
    let (first, last) = (3 * pad, 3 * pad + n - 3);
    for k in 0..pad {
        padded.copy_within(first..first + 3, 3 * k);
        padded.copy_within(last..last + 3, last + 3 + 3 * k);
    }
}

/// The three horizontal passes for radius `R <= DIRECT_MAX_RADIUS`, row by row in place, through
/// `a` and `b` as padded rows (all three passes of a row stay in L1).
#[inline(always)]
fn direct_rows_generic<const R: usize>(
    data: &mut [u8],
    w: usize,
    ww: u32,
    fw: u32,
    a: &mut [u8],
    b: &mut [u8],
) {
    let (n, pad) = (w * 3, R + 1);
    let middle = 3 * pad..3 * pad + n;
    for row in data.chunks_exact_mut(n) {
        a[middle.clone()].copy_from_slice(row);
        replicate_edges(a, pad, n);
        box_row::<R>(a, &mut b[middle.clone()], ww, fw);
        replicate_edges(b, pad, n);
        box_row::<R>(b, &mut a[middle.clone()], ww, fw);
        replicate_edges(a, pad, n);
        box_row::<R>(a, row, ww, fw);
    }
}

/// The three vertical passes for radius `R <= DIRECT_MAX_RADIUS`: data -> a -> b -> data, with no
/// u32 running-sum row to load and store.
#[inline(always)]
fn direct_columns_generic<const R: usize>(
    data: &mut [u8],
    stride: usize,
    ww: u32,
    fw: u32,
    a: &mut [u8],
    b: &mut [u8],
) {
    let (a, b) = (&mut a[..data.len()], &mut b[..data.len()]);
    box_column_rows::<R>(data, a, stride, ww, fw);
    box_column_rows::<R>(a, b, stride, ww, fw);
    box_column_rows::<R>(b, data, stride, ww, fw);
}

/// Defines `$name(r, data, n, ww, fw, a, b)`: `$generic::<r>` built for each SIMD level and each
/// radius 0..=DIRECT_MAX_RADIUS.
macro_rules! per_radius {
    ($name:ident = $generic:ident) => {
        fn $name(r: usize, data: &mut [u8], n: usize, ww: u32, fw: u32, a: &mut [u8], b: &mut [u8]) {
            simd::multiversion!(fn r0(data: &mut [u8], n: usize, ww: u32, fw: u32, a: &mut [u8], b: &mut [u8]) = $generic::<0>;);
            simd::multiversion!(fn r1(data: &mut [u8], n: usize, ww: u32, fw: u32, a: &mut [u8], b: &mut [u8]) = $generic::<1>;);
            simd::multiversion!(fn r2(data: &mut [u8], n: usize, ww: u32, fw: u32, a: &mut [u8], b: &mut [u8]) = $generic::<2>;);
            simd::multiversion!(fn r3(data: &mut [u8], n: usize, ww: u32, fw: u32, a: &mut [u8], b: &mut [u8]) = $generic::<3>;);
            const { assert!(DIRECT_MAX_RADIUS == 3, "one function above per direct radius") };
            match r {
                0 => r0(data, n, ww, fw, a, b),
                1 => r1(data, n, ww, fw, a, b),
                2 => r2(data, n, ww, fw, a, b),
                3 => r3(data, n, ww, fw, a, b),
                _ => unreachable!("radius {r} > DIRECT_MAX_RADIUS"),
            }
        }
    };
}
per_radius!(direct_rows = direct_rows_generic);
per_radius!(direct_columns = direct_columns_generic);

#[inline(always)]
fn round24(bulk: u32) -> u8 {
    ((bulk + (1 << 23)) >> 24) as u8
}

/// Transposes a `w`×`h` RGB image (`src`, rows of `w` pixels) into `dst` (rows of `h` pixels),
/// in tiles that stay in L1.
fn transpose_rgb(src: &[u8], dst: &mut [u8], w: usize, h: usize) {
    const TILE: usize = 32;
    let (src, _) = src.as_chunks::<3>();
    let (dst, _) = dst.as_chunks_mut::<3>();
    for y0 in (0..h).step_by(TILE) {
        let y1 = (y0 + TILE).min(h);
        for x0 in (0..w).step_by(TILE) {
            for x in x0..(x0 + TILE).min(w) {
                let column = &mut dst[x * h + y0..x * h + y1];
                for (d, y) in column.iter_mut().zip(y0..y1) {
                    *d = src[y * w + x];
                }
            }
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn box_columns_generic(
    src: &[u8],
    dst: &mut [u8],
    stride: usize,
    h: usize,
    r: usize,
    ww: u32,
    fw: u32,
    acc: &mut [u32],
) {
    let row = |y: isize| {
        let y = y.clamp(0, h as isize - 1) as usize;
        &src[y * stride..(y + 1) * stride]
    };
    let acc = &mut acc[..stride];
    acc.fill(0);
    for k in -(r as isize)..=r as isize {
        for (a, &v) in acc.iter_mut().zip(row(k)) {
            *a += u32::from(v);
        }
    }
    let r = r as isize;
    for (y, out) in dst.chunks_exact_mut(stride).enumerate() {
        let y = y as isize;
        let (above, below) = (row(y - r - 1), row(y + r + 1));
        let leave = row(y - r);
        // out = ww * sum(rows y-r..=y+r) + fw * (row y-r-1 + row y+r+1), rounded; then slide.
        let n = out.len();
        let (acc, up, down, gone) = (&mut acc[..n], &above[..n], &below[..n], &leave[..n]);
        for i in 0..n {
            let (a, u, d) = (acc[i], u32::from(up[i]), u32::from(down[i]));
            out[i] = round24(a * ww + (u + d) * fw);
            acc[i] = a + d - u32::from(gone[i]);
        }
    }
}
simd::multiversion!(
    /// One box pass down the columns of `h` rows of `stride` bytes, edges replicated:
    /// `out[y] = ww * sum(in[y-r..=y+r]) + fw * (in[y-r-1] + in[y+r+1])`, rounded (BoxBlur.c).
    #[allow(clippy::too_many_arguments)]
    fn box_columns(src: &[u8], dst: &mut [u8], stride: usize, h: usize, r: usize, ww: u32, fw: u32, acc: &mut [u32]) = box_columns_generic;
);

/// A true Gaussian: sampled kernel of radius ceil(3 sigma), normalised, separable, f32.
pub fn true_gaussian_blur(img: &mut RgbMut<'_>, sigma: f32, scratch: &mut BlurScratch) {
    let scratch = &mut scratch.a;
    if sigma <= 0.0 {
        return;
    }
    let radius = (3.0 * sigma).ceil() as isize;
    let mut kernel: Vec<f32> =
        (-radius..=radius).map(|k| (-(k * k) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);
    let (w, h) = (img.width() as isize, img.height() as isize);
    let data = img.data();
    scratch.resize(data.len(), 0);
    gaussian_pass(data, scratch, w, h, &kernel, true);
    gaussian_pass(scratch, data, w, h, &kernel, false);
}

/// One 1-D pass of a normalised kernel along rows (`horizontal`) or columns, edges replicated.
fn gaussian_pass(src: &[u8], dst: &mut [u8], w: isize, h: isize, kernel: &[f32], horizontal: bool) {
    let radius = (kernel.len() / 2) as isize;
    let px = |x: isize, y: isize| ((y.clamp(0, h - 1) * w + x.clamp(0, w - 1)) as usize) * 3;
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let s: f32 = kernel
                    .iter()
                    .zip(-radius..=radius)
                    .map(|(k, d)| {
                        let at = if horizontal { px(x + d, y) } else { px(x, y + d) };
                        k * f32::from(src[at + c])
                    })
                    .sum();
                dst[px(x, y) + c] = s.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests;
