//! RandomResizedCrop: torchvision's box sampler (the resize of the box is
//! [`crate::resize::Resizer::crop_resize`]).

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Samples a crop box as `torchvision.transforms.RandomResizedCrop.get_params` does: ten tries
/// of (area fraction ~ U(scale), log aspect ratio ~ U(log ratio)), then a centre-crop fallback.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomResizedCrop {
    /// Range of the crop's area as a fraction of the image's, e.g. (0.08, 1.0).
    pub scale: (f64, f64),
    /// Range of the crop's width / height, e.g. (3/4, 4/3), sampled log-uniformly.
    pub ratio: (f64, f64),
}

/// A crop rectangle in source pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CropBox {
    /// First row.
    pub top: u32,
    /// First column.
    pub left: u32,
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
}

impl RandomResizedCrop {
    /// torchvision's defaults with a given minimum area fraction (moco-v3's `crop_min`).
    pub fn with_crop_min(crop_min: f64) -> Self {
        Self { scale: (crop_min, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0) }
    }

    /// Draws a box inside a `width`×`height` image. Mirrors torchvision 0.26
    /// `RandomResizedCrop.get_params`; Python's `round` is round-half-even.
    pub fn sample(&self, width: u32, height: u32, rng: &mut Rng) -> CropBox {
        let area = f64::from(width) * f64::from(height);
        let (log_r0, log_r1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target_area = area * rng.uniform(self.scale.0, self.scale.1);
            let aspect = rng.uniform(log_r0, log_r1).exp();
            let w = (target_area * aspect).sqrt().round_ties_even();
            let h = (target_area / aspect).sqrt().round_ties_even();
            if 0.0 < w && w <= f64::from(width) && 0.0 < h && h <= f64::from(height) {
                let (w, h) = (w as u32, h as u32);
                let top = rng.below(u64::from(height - h) + 1) as u32;
                let left = rng.below(u64::from(width - w) + 1) as u32;
                return CropBox { top, left, height: h, width: w };
            }
        }
        // Fallback: the largest centred box whose ratio is inside the range.
        let in_ratio = f64::from(width) / f64::from(height);
        let (w, h) = if in_ratio < self.ratio.0 {
            (width, ((f64::from(width) / self.ratio.0).round_ties_even() as u32).max(1))
        } else if in_ratio > self.ratio.1 {
            (((f64::from(height) * self.ratio.1).round_ties_even() as u32).max(1), height)
        } else {
            (width, height)
        };
        CropBox { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w }
    }
}
