//! Horizontal flip, in place.

use crate::{RgbMut, simd};

#[inline(always)]
fn hflip_generic(data: &mut [u8], w: usize) {
    for row in data.chunks_exact_mut(w * 3) {
        // Reversing the bytes reverses the pixels and each pixel's channels (vectorised byte
        // shuffles); swapping R and B back puts the channels in order.
        row.reverse();
        for p in row.chunks_exact_mut(3) {
            p.swap(0, 2);
        }
    }
}
simd::multiversion!(fn hflip_rows(data: &mut [u8], w: usize) = hflip_generic;);

/// Mirrors the image left-right (torchvision `hflip`).
pub fn hflip(img: &mut RgbMut<'_>) {
    let w = img.width() as usize;
    hflip_rows(img.data(), w);
}
