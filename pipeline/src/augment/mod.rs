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
        if recipe.steps.len() > MAX_STEPS {
            // A recipe made in code skips `Recipe::validate`; never drop its extra steps silently.
            return Err(Error::InvalidRecipe {
                recipe: "(view)".to_owned(),
                reason: format!("{} steps, at most {MAX_STEPS}", recipe.steps.len()),
            });
        }
        let crop = recipe.crop.sample(src.width(), src.height(), rng);
        // Every step's coin and parameters first, in the recipe's order (the draws do not depend
        // on the pixels): the flips are then known before the resize, which mirrors its output
        // columns for free, and the photometric steps run after it in order.
        let mut steps = [None; MAX_STEPS];
        for (slot, step) in steps.iter_mut().zip(&recipe.steps) {
            *slot = Some(if rng.bernoulli(step.p) { draw(&step.op, rng) } else { Drawn::Skipped });
        }
        let flips = steps.iter().filter(|s| **s == Some(Drawn::HorizontalFlip)).count();
        self.resizer.crop_resize_mirrored(src, crop, out, flips % 2 == 1)?;
        if photometric == Photometric::Here {
            for (drawn, step) in steps.iter().flatten().zip(&recipe.steps) {
                self.apply(drawn, &step.op, out);
            }
        }
        Ok(ViewLog { crop, steps })
    }

    /// Applies a photometric step with its drawn parameters (a flip or a skipped step: nothing,
    /// the flips were folded into the resize).
    fn apply(&mut self, drawn: &Drawn, op: &Op, img: &mut RgbMut<'_>) {
        match (drawn, op) {
            (Drawn::ColorJitter(params), _) => params.apply(img),
            (Drawn::Grayscale, _) => grayscale(img),
            (Drawn::GaussianBlur { sigma }, Op::GaussianBlur(b)) => {
                b.apply(img, *sigma, &mut self.scratch)
            }
            (Drawn::Solarize { threshold }, _) => solarize(img, *threshold),
            _ => {}
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
        (seed, epoch, sample): (u64, u64, u64),
        out1: &mut RgbMut<'_>,
        out2: &mut RgbMut<'_>,
        photometric: Photometric,
    ) -> Result<[ViewLog; 2], Error> {
        let key = |view| StreamKey { seed, epoch, sample, view };
        let mut rng = Rng::for_stream(key(0));
        let log1 = self.view_with(&recipe.view1, src, &mut rng, out1, photometric)?;
        let mut rng = Rng::for_stream(key(1));
        let log2 = self.view_with(&recipe.view2, src, &mut rng, out2, photometric)?;
        Ok([log1, log2])
    }
}

#[cfg(test)]
mod tests;
