//! Two-view augmentation: ops callable one at a time, recipes as data, and an [`Augmenter`] that
//! writes both views of a sample straight into caller-provided buffers.
//!
//! Every op mirrors the function the reference loader calls (torchvision on PIL images, PIL's
//! own filters); `docs/augment.md` lists each op with its source and tested tolerance. An op
//! draws its parameters from the view's [`Rng`] (`sample`) and applies them separately, so the
//! drawn values can be logged ([`ViewLog`]) and the arithmetic tested against the reference on
//! identical parameters.

mod blur;
mod color;
mod crop;
pub mod device;
mod flip;
pub mod preview;
mod recipe;
mod solarize;

pub use blur::{BlurMethod, BlurScratch, GaussianBlur, pil_gaussian_blur, true_gaussian_blur};
pub use color::{
    ColorJitter, JitterParams, adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation,
    grayscale, luma,
};
pub use crop::{CropBox, RandomResizedCrop};
pub use flip::hflip;
pub use recipe::{MAX_STEPS, Op, Recipe, Step, ViewRecipe};
pub use solarize::solarize;

use crate::resize::Resizer;
use crate::rng::{Rng, StreamKey};
use crate::{Error, RgbMut, RgbRef};
use color::{ColorChain, ColorOp};

/// What one step of a view did, with the parameters it drew.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Drawn {
    /// The step's coin came up tails.
    Skipped,
    /// Colour jitter with its factors and order.
    ColorJitter(JitterParams),
    /// Converted to 3-channel grayscale.
    Grayscale,
    /// Blurred with this sigma.
    GaussianBlur {
        /// Standard deviation in pixels.
        sigma: f32,
    },
    /// Solarized at this threshold.
    Solarize {
        /// Bytes at or above it were inverted.
        threshold: u8,
    },
    /// Mirrored left-right.
    HorizontalFlip,
}

/// Where a view's photometric steps (colour jitter, grayscale, blur, solarize) run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Photometric {
    /// On the CPU, in the worker (crop, then every step in order).
    #[default]
    Here,
    /// Only drawn: the worker crops and flips, the trainer applies the rest on its device from
    /// the drawn parameters ([`device::encode`]).
    Deferred,
}

/// What a sample's views are cut from: a decoded image, and the size its crops are drawn at —
/// the image's own, or for a DCT-scaled decode the full size, whose crops are then mapped onto
/// the smaller decode (same draws, same geometry, resampled from fewer pixels).
#[derive(Clone, Copy)]
pub struct Source<'a> {
    /// The pixels.
    pub image: RgbRef<'a>,
    /// The size at full scale: the crops' coordinates.
    pub full_size: (u32, u32),
    /// The decode's scale in eighths: 8 when `image` is the full-size image, else 1, 2 or 4.
    pub scale_eighths: u8,
}

impl<'a> Source<'a> {
    /// An image at full scale.
    pub fn full(image: RgbRef<'a>) -> Self {
        Source { image, full_size: (image.width(), image.height()), scale_eighths: 8 }
    }

    /// A decode at `scale_eighths`/8 of a `full_size` image, refused unless its size is what
    /// that scale gives (libjpeg's `ceil(side * n / 8)`).
    pub fn scaled(
        image: RgbRef<'a>,
        full_size: (u32, u32),
        scale_eighths: u8,
    ) -> Result<Self, Error> {
        let scaled = |d: u32| crate::decode::dct_scaled(d, u32::from(scale_eighths));
        if !matches!(scale_eighths, 1 | 2 | 4 | 8)
            || (image.width(), image.height()) != (scaled(full_size.0), scaled(full_size.1))
        {
            return Err(Error::Resize {
                src_w: image.width(),
                src_h: image.height(),
                dst_w: full_size.0,
                dst_h: full_size.1,
                reason: format!(
                    "not a decode at {scale_eighths}/8 of a {}x{} image",
                    full_size.0, full_size.1
                ),
            });
        }
        Ok(Source { image, full_size, scale_eighths })
    }
}

/// The crops [`Augmenter::two_views`] draws for `key` on a `full_size` source (the first draw
/// of each view's stream), known before the image is decoded — to pick its DCT scale.
pub fn crops(
    recipe: &Recipe,
    (width, height): (u32, u32),
    (seed, epoch, sample): (u64, u64, u64),
) -> [CropBox; 2] {
    let crop = |view: &ViewRecipe, v| {
        let mut rng = Rng::for_stream(StreamKey { seed, epoch, sample, view: v });
        view.crop.sample(width, height, &mut rng)
    };
    [crop(&recipe.view1, 0), crop(&recipe.view2, 1)]
}

/// The smallest DCT scale (in eighths: 1, 2, 4, else 8) at which every crop still spans at
/// least `out` pixels on each side, so that its resize to `out` still only shrinks — the
/// scale at which a decode loses nothing the views keep (libjpeg-turbo's power-of-two IDCTs).
pub fn dct_scale_for(crops: &[CropBox], (out_w, out_h): (u32, u32)) -> u8 {
    let fits = |n: u64| {
        crops.iter().all(|c| {
            u64::from(c.width) * n >= 8 * u64::from(out_w)
                && u64::from(c.height) * n >= 8 * u64::from(out_h)
        })
    };
    [1u8, 2, 4].into_iter().find(|&n| fits(u64::from(n))).unwrap_or(8)
}

/// Everything a view drew: its crop box and one entry per recipe step (the rest `None`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ViewLog {
    /// The crop, in source pixels.
    pub crop: CropBox,
    /// Per step of the view's recipe, in order.
    pub steps: [Option<Drawn>; MAX_STEPS],
}

/// A worker's reusable state: the resizer and the blur's scratch. Make one per thread; after the
/// first sample of a given size it allocates nothing.
#[derive(Default)]
pub struct Augmenter {
    resizer: Resizer,
    scratch: BlurScratch,
}

/// Draws one step's parameters from the view's stream (the step's coin came up heads).
fn draw(op: &Op, rng: &mut Rng) -> Drawn {
    match op {
        Op::ColorJitter(j) => Drawn::ColorJitter(j.sample(rng)),
        Op::Grayscale => Drawn::Grayscale,
        Op::GaussianBlur(b) => Drawn::GaussianBlur { sigma: b.sample(rng) },
        Op::Solarize { threshold } => Drawn::Solarize { threshold: *threshold },
        Op::HorizontalFlip => Drawn::HorizontalFlip,
    }
}

impl Augmenter {
    /// A fresh worker state.
    pub fn new() -> Self {
        Self::default()
    }

    /// One view: crop+resize `src` into `out` (whose size is the output size), then the steps.
    pub fn view(
        &mut self,
        recipe: &ViewRecipe,
        src: RgbRef<'_>,
        rng: &mut Rng,
        out: &mut RgbMut<'_>,
    ) -> Result<ViewLog, Error> {
        self.view_with(recipe, src, rng, out, Photometric::Here)
    }

    /// [`Augmenter::view`], the photometric steps applied here or only drawn
    /// ([`Photometric::Deferred`]: the same draws from `rng`, in the same order).
    pub fn view_with(
        &mut self,
        recipe: &ViewRecipe,
        src: RgbRef<'_>,
        rng: &mut Rng,
        out: &mut RgbMut<'_>,
        photometric: Photometric,
    ) -> Result<ViewLog, Error> {
        self.view_from(recipe, Source::full(src), rng, out, photometric)
    }

    /// [`Augmenter::view_with`] from a [`Source`]: the crop is drawn at its full size and, on
    /// a scaled decode, resized from the same box mapped onto it.
    pub fn view_from(
        &mut self,
        recipe: &ViewRecipe,
        source: Source<'_>,
        rng: &mut Rng,
        out: &mut RgbMut<'_>,
        photometric: Photometric,
    ) -> Result<ViewLog, Error> {
        if recipe.steps.len() > MAX_STEPS {
            // A recipe made in code skips `Recipe::validate`; never drop its extra steps silently.
            return Err(Error::InvalidRecipe {
                recipe: "(view)".to_owned(),
                reason: format!("{} steps, at most {MAX_STEPS}", recipe.steps.len()),
            });
        }
        let crop = recipe.crop.sample(source.full_size.0, source.full_size.1, rng);
        // Every step's coin and parameters first, in the recipe's order (the draws do not depend
        // on the pixels): the flips are then known before the resize, which mirrors its output
        // columns for free, and the photometric steps run after it in order.
        let mut steps = [None; MAX_STEPS];
        for (slot, step) in steps.iter_mut().zip(&recipe.steps) {
            *slot = Some(if rng.bernoulli(step.p) { draw(&step.op, rng) } else { Drawn::Skipped });
        }
        let flips = steps.iter().filter(|s| **s == Some(Drawn::HorizontalFlip)).count();
        let mirror = flips % 2 == 1;
        if source.scale_eighths == 8 {
            self.resizer.crop_resize_mirrored(source.image, crop, out, mirror)?;
        } else {
            // A scale of n/8 maps pixel edges x to x n / 8: exact in f32 (n / 8 a power of two).
            let s = f32::from(source.scale_eighths) / 8.0;
            let (x0, y0) = (crop.left as f32 * s, crop.top as f32 * s);
            let (x1, y1) =
                ((crop.left + crop.width) as f32 * s, (crop.top + crop.height) as f32 * s);
            self.resizer.box_resize_mirrored(source.image, [x0, y0, x1, y1], out, mirror)?;
        }
        if photometric == Photometric::Here {
            self.photometric(&steps, recipe, out);
        }
        Ok(ViewLog { crop, steps })
    }

    /// Applies a view's drawn photometric steps in order (flips and skipped steps: nothing, the
    /// flips were folded into the resize). The pointwise ones between blurs run as one
    /// [`ColorChain`]: the bytes of running them one by one, in fewer passes.
    fn photometric(&mut self, steps: &[Option<Drawn>], recipe: &ViewRecipe, img: &mut RgbMut<'_>) {
        let mut chain = ColorChain::new();
        for (drawn, step) in steps.iter().flatten().zip(&recipe.steps) {
            match (drawn, &step.op) {
                (Drawn::ColorJitter(params), _) => params.push_to(&mut chain, img),
                (Drawn::Grayscale, _) => chain.push(ColorOp::Grayscale, img),
                (Drawn::Solarize { threshold }, _) => {
                    chain.push(ColorOp::Solarize(*threshold), img)
                }
                (Drawn::GaussianBlur { sigma }, Op::GaussianBlur(b)) => {
                    chain.run(img);
                    b.apply(img, *sigma, &mut self.scratch)
                }
                _ => {}
            }
        }
        chain.run(img);
    }

    /// [`Augmenter::photometric`] one op at a time, each through its public function (the
    /// chain's reference).
    #[cfg(test)]
    fn photometric_one_by_one(
        &mut self,
        steps: &[Option<Drawn>],
        recipe: &ViewRecipe,
        img: &mut RgbMut<'_>,
    ) {
        for (drawn, step) in steps.iter().flatten().zip(&recipe.steps) {
            match (drawn, &step.op) {
                (Drawn::ColorJitter(params), _) => params.apply_one_by_one(img),
                (Drawn::Grayscale, _) => grayscale(img),
                (Drawn::GaussianBlur { sigma }, Op::GaussianBlur(b)) => {
                    b.apply(img, *sigma, &mut self.scratch)
                }
                (Drawn::Solarize { threshold }, _) => solarize(img, *threshold),
                _ => {}
            }
        }
    }

    /// Both views of sample `sample` in `epoch`: view 1 into `out1`, view 2 into `out2` (e.g. two
    /// slots of a batch buffer), each from its own stream keyed on (seed, epoch, sample, view).
    /// The same arguments give the same bytes on any thread.
    pub fn two_views(
        &mut self,
        recipe: &Recipe,
        src: RgbRef<'_>,
        key: (u64, u64, u64),
        out1: &mut RgbMut<'_>,
        out2: &mut RgbMut<'_>,
    ) -> Result<[ViewLog; 2], Error> {
        self.two_views_with(recipe, src, key, out1, out2, Photometric::Here)
    }

    /// [`Augmenter::two_views`], the photometric steps applied here or deferred (then the
    /// logs carry what the device applies: [`device::encode`]).
    pub fn two_views_with(
        &mut self,
        recipe: &Recipe,
        src: RgbRef<'_>,
        key: (u64, u64, u64),
        out1: &mut RgbMut<'_>,
        out2: &mut RgbMut<'_>,
        photometric: Photometric,
    ) -> Result<[ViewLog; 2], Error> {
        self.two_views_from(recipe, Source::full(src), key, out1, out2, photometric)
    }

    /// [`Augmenter::two_views_with`] from a [`Source`] (e.g. a DCT-scaled decode, the crops
    /// drawn at its full size: the same draws as from the full image).
    pub fn two_views_from(
        &mut self,
        recipe: &Recipe,
        source: Source<'_>,
        (seed, epoch, sample): (u64, u64, u64),
        out1: &mut RgbMut<'_>,
        out2: &mut RgbMut<'_>,
        photometric: Photometric,
    ) -> Result<[ViewLog; 2], Error> {
        let key = |view| StreamKey { seed, epoch, sample, view };
        let mut rng = Rng::for_stream(key(0));
        let log1 = self.view_from(&recipe.view1, source, &mut rng, out1, photometric)?;
        let mut rng = Rng::for_stream(key(1));
        let log2 = self.view_from(&recipe.view2, source, &mut rng, out2, photometric)?;
        Ok([log1, log2])
    }
}

#[cfg(test)]
mod tests;
