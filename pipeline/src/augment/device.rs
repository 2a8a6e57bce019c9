//! Deferred photometric steps as plain numbers, for a trainer that applies them on its device
//! (`augment_on = "device"`): the worker crops, resizes and flips; what every other step drew
//! travels with the batch as `SAMPLE_FLOATS` f32s per sample, `[view][step][STEP_FLOATS]`, steps
//! in recipe order. No libtorch here: `twoview-model`'s `photometric` module reads this layout.
//!
//! One step, `[kind, a, b, c, d, e, 0, 0]`:
//! - `kind` 0: nothing for the device (skipped, a flip — done by the worker —, or unused).
//! - 1, colour jitter: `a` = the order as `o0 + 4 o1 + 16 o2 + 64 o3` (0 brightness, 1
//!   contrast, 2 saturation, 3 hue), `b..d` = brightness, contrast, saturation factors, `e` =
//!   hue shift as PIL's wrapping byte 0..=255; an adjustment the recipe leaves out is NaN.
//! - 2, grayscale.
//! - 3, PIL box blur: `a` = integer box radius, `b` = inner weight, `c` = edge weight (24-bit
//!   fixed point, BoxBlur.c), `d` = sigma (for information).
//! - 4, solarize: `a` = threshold.

use super::blur::{box_radius, box_weights};
use super::{BlurMethod, Drawn, MAX_STEPS, Op, Recipe, ViewLog};
use crate::Error;

/// Floats per step.
pub const STEP_FLOATS: usize = 8;
/// Floats per view.
pub const VIEW_FLOATS: usize = MAX_STEPS * STEP_FLOATS;
/// Floats per sample (two views).
pub const SAMPLE_FLOATS: usize = 2 * VIEW_FLOATS;

/// Step kinds.
pub mod kind {
    /// Nothing to do on the device.
    pub const NONE: f32 = 0.0;
    /// Colour jitter.
    pub const JITTER: f32 = 1.0;
    /// Grayscale.
    pub const GRAYSCALE: f32 = 2.0;
    /// PIL's box blur.
    pub const BOX_BLUR: f32 = 3.0;
    /// Solarize.
    pub const SOLARIZE: f32 = 4.0;
}

/// Refuses a recipe the device cannot apply exactly (the true-Gaussian blur method).
pub fn check(recipe: &Recipe) -> Result<(), Error> {
    for (v, view) in [("view1", &recipe.view1), ("view2", &recipe.view2)] {
        for (i, step) in view.steps.iter().enumerate() {
            if let Op::GaussianBlur(b) = step.op
                && b.method == BlurMethod::Gaussian
            {
                return Err(Error::InvalidRecipe {
                    recipe: recipe.name.clone(),
                    reason: format!(
                        "{v}.steps[{i}]: blur method \"gaussian\" runs only on the CPU; use \
                         \"pil_box\" or augment_on = \"cpu\""
                    ),
                });
            }
        }
    }
    Ok(())
}

/// One step's numbers.
fn step(drawn: &Drawn) -> [f32; STEP_FLOATS] {
    let mut s = [0.0; STEP_FLOATS];
    match *drawn {
        Drawn::Skipped | Drawn::HorizontalFlip => {}
        Drawn::ColorJitter(j) => {
            let o = j.order.map(f32::from);
            let shift = j.hue.map(|f| f32::from(((f64::from(f) * 255.0) as i32) as u8));
            s[..6].copy_from_slice(&[
                kind::JITTER,
                o[0] + 4.0 * o[1] + 16.0 * o[2] + 64.0 * o[3],
                j.brightness.unwrap_or(f32::NAN),
                j.contrast.unwrap_or(f32::NAN),
                j.saturation.unwrap_or(f32::NAN),
                shift.unwrap_or(f32::NAN),
            ]);
        }
        Drawn::Grayscale => s[0] = kind::GRAYSCALE,
        Drawn::GaussianBlur { sigma } => {
            if sigma > 0.0 {
                let (r, ww, fw) = box_weights(box_radius(sigma, 3));
                s[..5].copy_from_slice(&[kind::BOX_BLUR, r as f32, ww as f32, fw as f32, sigma]);
            }
        }
        Drawn::Solarize { threshold } => {
            s[..2].copy_from_slice(&[kind::SOLARIZE, f32::from(threshold)]);
        }
    }
    s
}

/// Writes both views' deferred steps into `out` (`SAMPLE_FLOATS` long).
pub fn encode(logs: &[ViewLog; 2], out: &mut [f32]) {
    assert_eq!(out.len(), SAMPLE_FLOATS, "one sample's parameters");
    for (log, view) in logs.iter().zip(out.chunks_exact_mut(VIEW_FLOATS)) {
        for (drawn, s) in log.steps.iter().zip(view.chunks_exact_mut(STEP_FLOATS)) {
            s.copy_from_slice(&drawn.as_ref().map_or([0.0; STEP_FLOATS], step));
        }
    }
}
