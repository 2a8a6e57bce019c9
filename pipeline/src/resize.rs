//! Resizing, for prep-shards (a whole image to a storage size: shorter side, torchvision's
//! `Resize(n)`, or longer side) and for augmentation (a crop to a view), through one
//! [`Resizer`]: fast_image_resize's SIMD convolution for the storage sizes, PIL's own bilinear
//! resample (byte-exact, [`bilinear`]) for crops to views.

mod bilinear;

use fast_image_resize::{self as fir, FilterType, PixelType, ResizeAlg, ResizeOptions};

use crate::augment::CropBox;
use crate::{Error, RgbImage, RgbMut, RgbRef};

/// Which side to bring to the target size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fit {
    /// Shorter side = n, aspect kept (the longer side truncated, as torchvision's `Resize(n)`).
    ShortSide(u32),
    /// Longer side = n, aspect kept.
    MaxSide(u32),
}

/// The resampling filter (all antialiased when shrinking, as PIL and torchvision do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    /// Triangle filter: torchvision's `Resize` default.
    Bilinear,
    /// Catmull-Rom cubic.
    Bicubic,
    /// Lanczos, 3 lobes.
    Lanczos3,
}

impl Filter {
    fn alg(self) -> ResizeAlg {
        ResizeAlg::Convolution(match self {
            Self::Bilinear => FilterType::Bilinear,
            Self::Bicubic => FilterType::CatmullRom,
            Self::Lanczos3 => FilterType::Lanczos3,
        })
    }
}

impl Fit {
    /// The output size for a `w`×`h` image; `upscale` allows growing, otherwise an image already
    /// within the target keeps its size.
    pub fn size(self, w: u32, h: u32, upscale: bool) -> (u32, u32) {
        let (short, long) = (w.min(h), w.max(h));
        let (new_short, new_long) = match self {
            Self::ShortSide(n) => {
                if short == n || (short < n && !upscale) {
                    return (w, h);
                }
                (n, ((n as u64 * long as u64) / short as u64).max(1) as u32)
            }
            Self::MaxSide(n) => {
                if long == n || (long < n && !upscale) {
                    return (w, h);
                }
                (((n as u64 * short as u64) / long as u64).max(1) as u32, n)
            }
        };
        if w <= h { (new_short, new_long) } else { (new_long, new_short) }
    }

    /// Minimum (short, long) sides a DCT-scaled decode must keep so that this fit still only
    /// shrinks: the decoder may go down to it, never below.
    pub fn dct_floor(self) -> (u32, u32) {
        match self {
            Self::ShortSide(n) => (n, 0),
            Self::MaxSide(n) => (0, n),
        }
    }
}

/// A worker's reusable resizer (one per thread), for both jobs: a whole image to its storage
/// size (prep-shards: a fast_image_resize convolution pass, antialiased when shrinking as PIL's
/// `Image.resize`, within a level of it) and a crop to a view (RandomResizedCrop, eval centre
/// crops: PIL's bilinear resample byte for byte, with its coefficients cached per size).
pub struct Resizer {
    inner: fir::Resizer,
    bilinear: bilinear::Bilinear,
}

impl Default for Resizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Resizer {
    /// A resizer using the best SIMD extensions of this CPU.
    pub fn new() -> Self {
        Self { inner: fir::Resizer::new(), bilinear: bilinear::Bilinear::default() }
    }

    /// Resizes the `crop` of `src` to fill `dst` with `filter`.
    pub fn resize_into(
        &mut self,
        src: RgbRef<'_>,
        crop: CropBox,
        dst: &mut RgbMut<'_>,
        filter: Filter,
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
        let options = ResizeOptions::new().resize_alg(filter.alg());
        self.inner.resize(&cropped, &mut dst_img, &options).map_err(|e| err(e.to_string()))
    }

    /// Resizes the `crop` of `src` to fill `dst`, bilinear: RandomResizedCrop's resize, the same
    /// bytes as torchvision's `resized_crop` on a PIL image (crop, then PIL's
    /// `resize(BILINEAR)`).
    pub fn crop_resize(
        &mut self,
        src: RgbRef<'_>,
        crop: CropBox,
        dst: &mut RgbMut<'_>,
    ) -> Result<(), Error> {
        self.crop_resize_mirrored(src, crop, dst, false)
    }

    /// [`Resizer::crop_resize`], then mirrored left-right when `mirror` (torchvision `hflip`
    /// after the resize) — in the same pass: the horizontal filter writes its output columns
    /// in reverse order, so the flip costs nothing.
    pub fn crop_resize_mirrored(
        &mut self,
        src: RgbRef<'_>,
        crop: CropBox,
        dst: &mut RgbMut<'_>,
        mirror: bool,
    ) -> Result<(), Error> {
        let (w, h) = (src.width(), src.height());
        let inside = crop.width > 0
            && crop.height > 0
            && u64::from(crop.left) + u64::from(crop.width) <= u64::from(w)
            && u64::from(crop.top) + u64::from(crop.height) <= u64::from(h);
        if !inside {
            let reason = format!(
                "the crop {}x{} at ({}, {}) is not inside the image",
                crop.width, crop.height, crop.left, crop.top
            );
            return Err(outside(src, dst, reason));
        }
        let stride = w as usize * 3;
        let offset = crop.top as usize * stride + crop.left as usize * 3;
        let out_size = (dst.width() as usize, dst.height() as usize);
        let crop_size = (crop.width as usize, crop.height as usize);
        self.bilinear.resize(
            &src.data()[offset..],
            stride,
            crop_size,
            out_size,
            dst.data(),
            mirror,
        );
        Ok(())
    }

    /// [`Resizer::crop_resize_mirrored`] of a float box `[x0, y0, x1, y1]` (in pixels, inside
    /// the image) rather than whole pixels: Pillow's `resize(size, BILINEAR, box)`. What a crop
    /// drawn on the full-size image becomes on a DCT-scaled decode of it.
    pub fn box_resize_mirrored(
        &mut self,
        src: RgbRef<'_>,
        bx: [f32; 4],
        dst: &mut RgbMut<'_>,
        mirror: bool,
    ) -> Result<(), Error> {
        let (w, h) = (src.width(), src.height());
        let [x0, y0, x1, y1] = bx;
        let inside = bx.iter().all(|v| v.is_finite())
            && 0.0 <= x0
            && x0 < x1
            && x1 <= w as f32
            && 0.0 <= y0
            && y0 < y1
            && y1 <= h as f32;
        if !inside {
            return Err(outside(src, dst, format!("the box {bx:?} is not inside the image")));
        }
        let out_size = (dst.width() as usize, dst.height() as usize);
        let size = (w as usize, h as usize);
        self.bilinear.resize_box(
            src.data(),
            w as usize * 3,
            size,
            bx,
            out_size,
            dst.data(),
            mirror,
        );
        Ok(())
    }

    /// Resizes `src` to `w`×`h` with `filter`.
    pub fn resize(
        &mut self,
        src: RgbRef<'_>,
        w: u32,
        h: u32,
        filter: Filter,
    ) -> Result<RgbImage, Error> {
        let mut out = RgbImage::new(w, h);
        let whole = CropBox { top: 0, left: 0, height: src.height(), width: src.width() };
        self.resize_into(src, whole, &mut out.view_mut(), filter)?;
        Ok(out)
    }

    /// Brings `img` to `fit` (no copy when the size does not change). `full_size` is the size
    /// the image has at full scale: a DCT-scaled decode is resized to the size the full image
    /// would get, so scaling never changes the output size.
    pub fn fit(
        &mut self,
        img: RgbImage,
        full_size: (u32, u32),
        fit: Fit,
        upscale: bool,
        filter: Filter,
    ) -> Result<RgbImage, Error> {
        let (w, h) = fit.size(full_size.0, full_size.1, upscale);
        if (w, h) == (img.width(), img.height()) {
            return Ok(img);
        }
        self.resize(img.view(), w, h, filter)
    }
}

/// The error of a crop or box that is not inside `src`.
fn outside(src: RgbRef<'_>, dst: &RgbMut<'_>, reason: String) -> Error {
    Error::Resize {
        src_w: src.width(),
        src_h: src.height(),
        dst_w: dst.width(),
        dst_h: dst.height(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_torchvision_resize() {
        // torchvision: short = n, long = int(n * long / short).
        assert_eq!(Fit::ShortSide(256).size(500, 375, false), (341, 256));
        assert_eq!(Fit::ShortSide(256).size(375, 500, false), (256, 341));
        assert_eq!(Fit::ShortSide(256).size(224, 224, false), (224, 224), "no upscale by default");
        assert_eq!(Fit::ShortSide(256).size(224, 300, true), (256, 342));
        assert_eq!(Fit::MaxSide(256).size(500, 375, false), (256, 192));
        assert_eq!(Fit::MaxSide(256).size(10, 5000, false), (1, 256));
    }

    #[test]
    fn a_crop_outside_the_image_is_an_error_naming_it() {
        let img = RgbImage::new(10, 8);
        let mut out = RgbImage::new(4, 4);
        for crop in [
            CropBox { top: 0, left: 5, height: 8, width: 6 },
            CropBox { top: 7, left: 0, height: 2, width: 10 },
            CropBox { top: 0, left: 0, height: 0, width: 3 },
            CropBox { top: u32::MAX, left: 0, height: 2, width: 2 },
        ] {
            let err = Resizer::new().crop_resize(img.view(), crop, &mut out.view_mut());
            let msg = err.expect_err("outside").to_string();
            let want = format!("{}x{} at ({}, {})", crop.width, crop.height, crop.left, crop.top);
            assert!(msg.contains(&want) && msg.contains("10"), "{msg}");
        }
    }

    #[test]
    fn resize_keeps_a_flat_colour_flat() {
        let img = RgbImage::try_from_vec([10u8, 200, 30].repeat(500 * 375), 500, 375).unwrap();
        let out = Resizer::new()
            .fit(img, (500, 375), Fit::ShortSide(256), false, Filter::Bilinear)
            .unwrap();
        assert_eq!((out.width(), out.height()), (341, 256));
        assert!(out.data().chunks(3).all(|p| p == [10, 200, 30]));
    }
}
