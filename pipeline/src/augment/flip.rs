//! Horizontal flip, in place.

use crate::RgbMut;

/// Mirrors the image left-right (torchvision `hflip`).
pub fn hflip(img: &mut RgbMut<'_>) {
    let w = img.width() as usize;
    for row in img.data().chunks_exact_mut(w * 3) {
        let (pixels, _) = row.as_chunks_mut::<3>();
        pixels.reverse();
    }
}
