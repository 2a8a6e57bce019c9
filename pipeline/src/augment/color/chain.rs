//! A view's pointwise photometric steps — the colour jitter's four ops in their drawn order,
//! grayscale, solarize — run as one chain over planar f32 blocks of pixels: the pixels are
//! split into R, G, B planes once per pass and packed back to bytes once, where each op alone
//! unpacks and packs the whole image (for brightness that is nearly all of its time).
//!
//! Every op still ends on PIL's byte: it truncates (or rounds) to a whole number in [0, 255]
//! and the next op reads that whole number as an f32, which is the byte exactly. So the chain
//! gives the bytes of the ops one after another (tested at every SIMD level against them).
//! Contrast blends with the mean luma of the image as it stands when contrast runs: a chain
//! with contrast after other ops runs as two passes, the first also summing that luma.

use super::{BLOCK, hue_block};
use crate::{RgbMut, simd};

/// One pointwise step with its drawn parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum ColorOp {
    /// `adjust_brightness`.
    Brightness(f32),
    /// `adjust_contrast`.
    Contrast(f32),
    /// `adjust_saturation`.
    Saturation(f32),
    /// `adjust_hue`, as the wrapping shift of H.
    Hue(u8),
    /// `Grayscale(num_output_channels=3)`.
    Grayscale,
    /// `solarize` at this threshold.
    Solarize(u8),
}

/// A [`ColorOp`] as one pass runs it: contrast's mean resolved into a blend base.
#[derive(Clone, Copy, Debug)]
enum Step {
    Blend { base: f32, factor: f32 },
    Saturation(f32),
    Hue(i32),
    Grayscale,
    Solarize(f32),
}

/// At most this many steps wait before they run (a recipe's steps are few; more just run in
/// more passes).
const CAPACITY: usize = 8;

/// Pointwise steps collected in order, run by [`ColorChain::run`] (or when full) on an image.
/// No allocation: a fixed array.
pub(crate) struct ColorChain {
    ops: [ColorOp; CAPACITY],
    len: usize,
}

impl ColorChain {
    pub(crate) fn new() -> Self {
        ColorChain { ops: [ColorOp::Grayscale; CAPACITY], len: 0 }
    }

    /// Adds `op` after the ones waiting; a full chain runs on `img` first.
    pub(crate) fn push(&mut self, op: ColorOp, img: &mut RgbMut<'_>) {
        if self.len == CAPACITY {
            self.run(img);
        }
        self.ops[self.len] = op;
        self.len += 1;
    }

    /// Runs the waiting steps on `img`, in order, and empties the chain.
    ///
    /// # Panics
    ///
    /// On a NaN or infinite blend factor, as the single ops.
    pub(crate) fn run(&mut self, img: &mut RgbMut<'_>) {
        let ops = &self.ops[..self.len];
        self.len = 0;
        if ops.is_empty() {
            return;
        }
        let data = img.data();
        let pixels = data.len() / 3;
        let mut steps = [Step::Grayscale; CAPACITY];
        let mut n = 0;
        for op in ops {
            steps[n] = match *op {
                ColorOp::Brightness(f) => {
                    Step::Blend { base: 0.0, factor: super::finite_factor("adjust_brightness", f) }
                }
                ColorOp::Contrast(f) => {
                    let factor = super::finite_factor("adjust_contrast", f);
                    // The mean luma of the image as it stands now: run what waits, summing.
                    let mut sum = 0;
                    if n == 0 {
                        super::luma_sum(data, &mut sum);
                    } else {
                        pass(data, &steps[..n], Some(&mut sum));
                        n = 0;
                    }
                    Step::Blend { base: f32::from(super::mean_luma(sum, pixels)), factor }
                }
                ColorOp::Saturation(f) => {
                    Step::Saturation(super::finite_factor("adjust_saturation", f))
                }
                ColorOp::Hue(shift) => Step::Hue(i32::from(shift)),
                ColorOp::Grayscale => Step::Grayscale,
                ColorOp::Solarize(t) => Step::Solarize(f32::from(t)),
            };
            n += 1;
        }
        pass(data, &steps[..n], None);
    }
}

/// `adjust_hue`'s round trip on RGB bytes, H shifted by `shift` as a wrapping byte: a chain of
/// that one step.
pub(super) fn hue(data: &mut [u8], shift: u8) {
    pass(data, &[Step::Hue(i32::from(shift))], None);
}

/// [`super::luma`] of whole-number channels in f32: the 16-bit fixed-point sum is below 2^24,
/// so every product and partial sum is exact, and so is the scaling by 2^-16.
#[inline(always)]
fn luma_i32(r: f32, g: f32, b: f32) -> i32 {
    let sum = r * 19595.0 + g * 38470.0 + b * 7471.0 + 32768.0;
    // SAFETY: sum in [32768, 2^24), so the quotient is finite, non-negative and below 256.
    unsafe { simd::trunc_i32(sum * (1.0 / 65536.0)) }
}

#[inline(always)]
fn luma(r: f32, g: f32, b: f32) -> f32 {
    luma_i32(r, g, b) as f32
}

/// [`super::blend`], left as a whole-number f32.
#[inline(always)]
fn blend(in1: f32, in2: f32, alpha: f32) -> f32 {
    super::blend_whole(in1, in2, alpha) as f32
}

/// One block's planes through `steps`. Every lane holds a whole number in [0, 255] before and
/// after each step (a partial block's stale lanes included), which each step's arithmetic needs.
#[inline(always)]
fn block(r: &mut [f32; BLOCK], g: &mut [f32; BLOCK], b: &mut [f32; BLOCK], steps: &[Step]) {
    for step in steps {
        match *step {
            // Plane by plane: a chained iterator over the three planes compiles to a scalar
            // loop (it was 60 % of the chain's time), a fixed 64-lane loop to vector code.
            Step::Blend { base, factor } => {
                for plane in [&mut *r, &mut *g, &mut *b] {
                    for x in plane {
                        *x = blend(base, *x, factor);
                    }
                }
            }
            Step::Saturation(factor) => {
                for k in 0..BLOCK {
                    let l = luma(r[k], g[k], b[k]);
                    r[k] = blend(l, r[k], factor);
                    g[k] = blend(l, g[k], factor);
                    b[k] = blend(l, b[k], factor);
                }
            }
            Step::Hue(shift) => hue_block(r, g, b, shift),
            Step::Grayscale => {
                for k in 0..BLOCK {
                    let l = luma(r[k], g[k], b[k]);
                    (r[k], g[k], b[k]) = (l, l, l);
                }
            }
            Step::Solarize(t) => {
                for plane in [&mut *r, &mut *g, &mut *b] {
                    for x in plane {
                        *x = if *x >= t { 255.0 - *x } else { *x };
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn pass_generic(data: &mut [u8], steps: &[Step], luma_sum: Option<&mut u64>) {
    let (mut r, mut g, mut b) = ([0f32; BLOCK], [0f32; BLOCK], [0f32; BLOCK]);
    let mut sum = 0u64;
    for chunk in data.chunks_mut(3 * BLOCK) {
        for (p, ((r, g), b)) in
            chunk.chunks_exact(3).zip(r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()))
        {
            (*r, *g, *b) = (f32::from(p[0]), f32::from(p[1]), f32::from(p[2]));
        }
        block(&mut r, &mut g, &mut b, steps);
        let pixels = chunk.len() / 3;
        if luma_sum.is_some() {
            let s: i32 = (0..pixels).map(|k| luma_i32(r[k], g[k], b[k])).sum();
            sum += s as u64;
        }
        // SAFETY: whole numbers in [0, 255] in every lane (block's contract).
        let byte = |x: f32| unsafe { simd::trunc_i32(x) } as u8;
        for (p, ((r, g), b)) in chunk.chunks_exact_mut(3).zip(r.iter().zip(g.iter()).zip(b.iter()))
        {
            p.copy_from_slice(&[byte(*r), byte(*g), byte(*b)]);
        }
    }
    if let Some(out) = luma_sum {
        *out = sum;
    }
}
simd::multiversion!(fn pass(data: &mut [u8], steps: &[Step], luma_sum: Option<&mut u64>) = pass_generic;);
