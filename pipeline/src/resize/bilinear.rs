//! PIL's bilinear resample, byte for byte: what `torchvision.transforms.functional.resized_crop`
//! does to a PIL image (crop, then `Image.resize(size, BILINEAR)`, Pillow's
//! `libImaging/Resample.c`). The same coefficients (computed in f64 in Pillow's order, then
//! rounded to 22-bit fixed point), the same two passes (horizontal into u8 rows, then
//! vertical), the same rounding (`(sum + 2^21) >> 22`, clamped to 0..=255).
//!
//! Both passes run as one vectorisable kernel, [`taps`]: `out[i] = Σ_t src[t·stride + i] ·
//! k[t]` over contiguous bytes (i32 products, exact). The vertical pass is that directly; the
//! horizontal pass runs it on the crop transposed to columns of 4-byte pixels (R, G, B, pad),
//! and its output is transposed back to RGB rows for the vertical pass ([`transpose`]).

use std::collections::HashMap;
use std::sync::Arc;

use crate::simd;
use transpose::{columns_to_rgb_rows, rgb_rows_to_columns};

/// Pillow's `PRECISION_BITS` for 8-bit images.
const PRECISION_BITS: u32 = 22;
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// One axis's filter: for each output index, the first input index and its taps.
#[derive(Debug, PartialEq)]
pub(crate) struct Axis {
    /// (first input index, number of taps) per output index.
    bounds: Vec<(usize, usize)>,
    /// `bounds.len()` rows of `ksize` fixed-point coefficients.
    k: Vec<i32>,
    ksize: usize,
}

impl Axis {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear filter, an
    /// `in_size` axis (box 0..in_size) to `out_size`.
    pub(crate) fn bilinear(in_size: usize, out_size: usize) -> Axis {
        Axis::bilinear_box(in_size, (0.0, in_size as f32), out_size)
    }

    /// [`Axis::bilinear`] of the box `in0..in1` (Pillow's float `box`, in input pixels) of an
    /// `in_size` axis: Pillow's `resize(size, BILINEAR, box)` along one axis. Taps stay inside
    /// `0..in_size`.
    pub(crate) fn bilinear_box(in_size: usize, (in0, in1): (f32, f32), out_size: usize) -> Axis {
        assert!(in_size > 0 && out_size > 0, "resize {in_size} -> {out_size}");
        assert!(
            0.0 <= in0 && in0 < in1 && in1 <= in_size as f32,
            "box {in0}..{in1} of an axis of {in_size}"
        );
        // Pillow: `(in1 - in0) / outSize` in double, from the float box.
        let scale = (f64::from(in1) - f64::from(in0)) / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale; // the bilinear filter's support is 1
        let ksize = support.ceil() as usize * 2 + 1;
        let ss = 1.0 / filterscale;
        let mut k = vec![0i32; out_size * ksize];
        let mut bounds = Vec::with_capacity(out_size);
        let mut w = vec![0f64; ksize];
        for (xx, kk) in k.chunks_exact_mut(ksize).enumerate() {
            let center = f64::from(in0) + (xx as f64 + 0.5) * scale;
            // C's (int) truncates toward zero, as `as` does in range.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax - xmin;
            let mut ww = 0.0;
            for (x, wx) in w[..n].iter_mut().enumerate() {
                let t = (((x + xmin) as f64 - center + 0.5) * ss).abs();
                *wx = if t < 1.0 { 1.0 - t } else { 0.0 };
                ww += *wx;
            }
            for (kx, &wx) in kk.iter_mut().zip(&w[..n]) {
                let v = if ww != 0.0 { wx / ww } else { wx };
                let scaled = v * f64::from(1u32 << PRECISION_BITS);
                *kx = if v < 0.0 { (-0.5 + scaled) as i32 } else { (0.5 + scaled) as i32 };
            }
            bounds.push((xmin, n));
        }
        Axis { bounds, k, ksize }
    }

    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let (first, n) = self.bounds[i];
        (first, &self.k[i * self.ksize..][..n])
    }

    /// The input range the output uses: (first index, count).
    fn span(&self) -> (usize, usize) {
        let first = self.bounds[0].0;
        let &(last_first, last_n) = self.bounds.last().expect("out_size > 0");
        (first, last_first + last_n - first)
    }
}

#[inline(always)]
fn clip(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `out[i] = clip(2^21 + Σ_t src[t·stride + i] · k[t])`.
#[inline(always)]
fn taps_generic(src: &[u8], stride: usize, k: &[i32], out: &mut [u8]) {
    const C: usize = 32;
    let len = out.len();
    assert!(!k.is_empty() && src.len() >= (k.len() - 1) * stride + len);
    let mut x = 0;
    while x + C <= len {
        let mut acc = [HALF; C];
        for (t, &kt) in k.iter().enumerate() {
            let row: &[u8; C] = src[t * stride + x..][..C].try_into().unwrap();
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i32::from(p) * kt;
            }
        }
        let o: &mut [u8; C] = (&mut out[x..x + C]).try_into().unwrap();
        for (o, &a) in o.iter_mut().zip(&acc) {
            *o = clip(a);
        }
        x += C;
    }
    for (i, o) in out.iter_mut().enumerate().skip(x) {
        let sum =
            k.iter().enumerate().fold(HALF, |s, (t, &kt)| s + i32::from(src[t * stride + i]) * kt);
        *o = clip(sum);
    }
}
simd::multiversion!(fn taps(src: &[u8], stride: usize, k: &[i32], out: &mut [u8]) = taps_generic;);

/// The filters of a resize's two passes (`horizontal: None`: the rows are copied).
#[derive(Clone, Copy)]
struct Passes<'a> {
    horizontal: Option<&'a Axis>,
    vertical: &'a Axis,
}

/// A worker's bilinear resampler: scratch buffers and the coefficients of the sizes seen so far
/// (a crop's side → a view's side; a few hundred distinct pairs in practice).
#[derive(Default)]
pub(crate) struct Bilinear {
    axes: HashMap<(usize, usize), Arc<Axis>>,
    columns: Vec<u8>,
    filtered: Vec<u8>,
    rows: Vec<u8>,
}

/// Past this many cached axes the cache starts again (bounds memory for odd size mixes).
const MAX_AXES: usize = 4096;

impl Bilinear {
    fn axis(&mut self, in_size: usize, out_size: usize) -> Arc<Axis> {
        if self.axes.len() >= MAX_AXES {
            self.axes.clear();
        }
        self.axes
            .entry((in_size, out_size))
            .or_insert_with(|| Arc::new(Axis::bilinear(in_size, out_size)))
            .clone()
    }

    /// Resizes the `w`×`h` RGB image whose rows start `stride` bytes apart in `src` to the
    /// `out_w`×`out_h` RGB image `out` (rows packed), as PIL's `resize(BILINEAR)`; mirrored
    /// left-right after it when `mirror` (the horizontal pass writes its columns in reverse).
    pub(crate) fn resize(
        &mut self,
        src: &[u8],
        stride: usize,
        (w, h): (usize, usize),
        (out_w, out_h): (usize, usize),
        out: &mut [u8],
        mirror: bool,
    ) {
        assert!(w > 0 && h > 0 && out_w > 0 && out_h > 0);
        assert!(stride >= w * 3 && src.len() >= (h - 1) * stride + w * 3);
        let vertical = self.axis(h, out_h);
        // Pillow skips the horizontal pass when the width does not change (the identity taps
        // would copy — they still run to mirror), and the vertical one when the height does not.
        let horizontal = (w != out_w || mirror).then(|| self.axis(w, out_w));
        let passes = Passes { horizontal: horizontal.as_deref(), vertical: &vertical };
        self.run(src, stride, w, passes, h == out_h, (out_w, out_h), out, mirror);
    }

    /// [`Bilinear::resize`] of the float box `(x0, y0, x1, y1)` (in pixels, inside the `w`×`h`
    /// image), as a crop to the whole pixels the box touches, then a resize of the box inside
    /// it (Pillow's `resize(size, BILINEAR, box)` on that crop): the taps stop at the box's
    /// pixels, as a crop's do. A box on whole pixels is exactly [`Bilinear::resize`] of that
    /// crop; a fractional one is a crop drawn on a full-size image mapped onto a DCT-scaled
    /// decode of it. Both passes always run.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn resize_box(
        &mut self,
        src: &[u8],
        stride: usize,
        (w, h): (usize, usize),
        [x0, y0, x1, y1]: [f32; 4],
        (out_w, out_h): (usize, usize),
        out: &mut [u8],
        mirror: bool,
    ) {
        assert!(w > 0 && h > 0 && out_w > 0 && out_h > 0);
        assert!(stride >= w * 3 && src.len() >= (h - 1) * stride + w * 3);
        // The whole pixels under the box, and the box relative to them (exact in f32: the
        // box's corners less whole numbers at most 1 below them).
        let cover = |a: f32, b: f32, n: usize| {
            let (lo, hi) = (a.floor() as usize, (b.ceil() as usize).min(n));
            (lo, hi - lo, (a - lo as f32, b - lo as f32))
        };
        let (left, cw, xs) = cover(x0, x1, w);
        let (top, ch, ys) = cover(y0, y1, h);
        let horizontal = Axis::bilinear_box(cw, xs, out_w);
        let vertical = Axis::bilinear_box(ch, ys, out_h);
        let passes = Passes { horizontal: Some(&horizontal), vertical: &vertical };
        let src = &src[top * stride + left * 3..];
        self.run(src, stride, cw, passes, false, (out_w, out_h), out, mirror);
    }

    /// The two passes over `w` columns of `src` (rows `stride` apart): the horizontal one
    /// unless `passes.horizontal` is `None` (the rows are copied), the vertical one unless
    /// `copy_rows` (then the vertical filter is the identity and its rows are copied).
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        src: &[u8],
        stride: usize,
        w: usize,
        passes: Passes<'_>,
        copy_rows: bool,
        (out_w, out_h): (usize, usize),
        out: &mut [u8],
        mirror: bool,
    ) {
        assert_eq!(out.len(), out_w * out_h * 3);
        let Passes { horizontal, vertical } = passes;
        let (first, rows) = vertical.span();
        assert!(stride >= w * 3 && src.len() >= (first + rows - 1) * stride + w * 3);
        let out_stride = out_w * 3;
        // The horizontal pass into `rows`: the vertical pass's input rows first..first + rows.
        let (rows_src, rows_stride) = match horizontal {
            None => (&src[first * stride..], stride),
            Some(horizontal) => {
                let col = rows * 4;
                self.columns.resize(w * col, 0);
                rgb_rows_to_columns(&src[first * stride..], stride, w, rows, &mut self.columns);
                self.filtered.resize(out_w * col, 0);
                for (xx, dst) in self.filtered.chunks_exact_mut(col).enumerate() {
                    let (x0, k) = horizontal.taps(if mirror { out_w - 1 - xx } else { xx });
                    taps(&self.columns[x0 * col..], col, k, dst);
                }
                // The transpose back may write 4 bytes past a row's pixels.
                let row_stride = out_stride + 4;
                self.rows.resize(rows * row_stride, 0);
                columns_to_rgb_rows(&self.filtered, out_w, rows, &mut self.rows, row_stride);
                (&self.rows[..], row_stride)
            }
        };
        if copy_rows {
            for (y, o) in out.chunks_exact_mut(out_stride).enumerate() {
                o.copy_from_slice(&rows_src[y * rows_stride..][..out_stride]);
            }
            return;
        }
        for (yy, o) in out.chunks_exact_mut(out_stride).enumerate() {
            let (y0, k) = vertical.taps(yy);
            taps(&rows_src[(y0 - first) * rows_stride..], rows_stride, k, o);
        }
    }
}

#[cfg(test)]
mod tests;
mod transpose;
