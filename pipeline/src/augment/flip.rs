//! Horizontal flip, in place.

use crate::RgbMut;

/// Mirrors the image left-right (torchvision `hflip`).
pub fn hflip(img: &mut RgbMut<'_>) {
    let w = img.width() as usize;
    for row in img.data().chunks_exact_mut(w * 3) {
        let (mut a, mut b) = (0, w - 1);
        while a < b {
            for c in 0..3 {
                row.swap(a * 3 + c, b * 3 + c);
            }
            a += 1;
            b -= 1;
        }
    }
}
