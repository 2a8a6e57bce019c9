//! Solarize, in place.

use crate::RgbMut;

/// Solarize (PIL `ImageOps.solarize`, as moco-v3's `Solarize`): every byte at or above
/// `threshold` becomes `255 - byte`.
pub fn solarize(img: &mut RgbMut<'_>, threshold: u8) {
    for v in img.data() {
        if *v >= threshold {
            *v = 255 - *v;
        }
    }
}
