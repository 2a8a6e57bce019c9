//! Solarize, in place.

use crate::{RgbMut, simd};

/// Solarize (PIL `ImageOps.solarize`, as moco-v3's `Solarize`): every byte at or above
/// `threshold` becomes `255 - byte`.
pub fn solarize(img: &mut RgbMut<'_>, threshold: u8) {
    invert_from(img.data(), threshold);
}

#[inline(always)]
fn invert_from_generic(data: &mut [u8], threshold: u8) {
    for v in data {
        // 255 - v == v ^ 255 for a byte: a mask instead of a branch, so the loop vectorises.
        *v ^= u8::from(*v >= threshold).wrapping_neg();
    }
}
simd::multiversion!(fn invert_from(data: &mut [u8], threshold: u8) = invert_from_generic;);
