//! RandomResizedCrop: torchvision's box sampler, and crop+resize in one fast_image_resize call.

use fast_image_resize::{self as fir, FilterType, PixelType, ResizeAlg, ResizeOptions};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use crate::{Error, RgbMut, RgbRef};

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

/// A worker's reusable resizer: crops and resizes in one pass, bilinear with antialiasing
/// (the filter support grows with the downscale factor), as PIL's `Image.resize(BILINEAR)`.
pub struct CropResizer {
    resizer: fir::Resizer,
}

impl Default for CropResizer {
    fn default() -> Self {
        Self::new()
    }
}

impl CropResizer {
    /// A resizer using the best SIMD extensions of this CPU.
    pub fn new() -> Self {
        Self { resizer: fir::Resizer::new() }
    }

    /// Resizes the `crop` of `src` to fill `dst`.
    pub fn crop_resize(
        &mut self,
        src: RgbRef<'_>,
        crop: CropBox,
        dst: &mut RgbMut<'_>,
    ) -> Result<(), Error> {
        let (dst_w, dst_h) = (dst.width(), dst.height());
        let err = |reason: String| Error::Resize {
            src_w: src.width(),
            src_h: src.height(),
            dst_w,
            dst_h,
            reason,
        };
        let src_img =
            fir::images::ImageRef::new(src.width(), src.height(), src.data(), PixelType::U8x3)
                .map_err(|e| err(e.to_string()))?;
        let mut dst_img =
            fir::images::Image::from_slice_u8(dst_w, dst_h, dst.data(), PixelType::U8x3)
                .map_err(|e| err(e.to_string()))?;
        // Resize a cropped *view*, not the whole image with a crop box: torchvision crops first,
        // so the filter clamps at the crop's edges instead of reading the pixels beyond them.
        let cropped =
            fir::images::CroppedImage::new(&src_img, crop.left, crop.top, crop.width, crop.height)
                .map_err(|e| err(e.to_string()))?;
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        self.resizer.resize(&cropped, &mut dst_img, &options).map_err(|e| err(e.to_string()))
    }
}
