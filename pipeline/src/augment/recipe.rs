//! Recipes as data: what each of the two views does, in order, with which probability. The
//! presets write both views out literally so that their asymmetry shows in review.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{BlurMethod, ColorJitter, GaussianBlur, RandomResizedCrop};
use crate::Error;

/// Largest brightness/contrast/saturation strength a recipe may give (torchvision has no
/// bound; a factor must stay finite in f32).
pub const MAX_STRENGTH: f64 = 1e6;

/// Largest blur sigma, in pixels (a true Gaussian's kernel is 6 sigma wide; 1000 px blurs any
/// view flat).
pub const MAX_SIGMA: f64 = 1000.0;

/// Most steps one view may have (the log of a view is a fixed array of this size).
pub const MAX_STEPS: usize = 8;

/// An op that a step may apply. Its probability lives in the [`Step`], not here.
///
/// Written as a table with `kind` naming the op and the op's fields beside it. Read by hand
/// (not serde's internally tagged enums, which buffer the table and lose the key of a bad
/// value): every error names the field, e.g. ``gaussian_blur: invalid type: … in `method` ``.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// torchvision `ColorJitter`.
    ColorJitter(ColorJitter),
    /// torchvision `Grayscale(num_output_channels=3)`.
    Grayscale,
    /// moco-v3 `GaussianBlur` (PIL's box approximation by default).
    GaussianBlur(GaussianBlur),
    /// PIL `ImageOps.solarize`.
    Solarize {
        /// Bytes at or above it are inverted (128 in the reference).
        threshold: u8,
    },
    /// torchvision `hflip`.
    HorizontalFlip,
}

/// `solarize`'s fields, for reading.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SolarizeFields {
    threshold: u8,
}

impl<'de> Deserialize<'de> for Op {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut table = toml::Table::deserialize(d)?;
        let kind = match table.remove("kind") {
            Some(toml::Value::String(k)) => k,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`kind` must be a string naming the op, got {other}"
                )));
            }
            None => return Err(D::Error::missing_field("kind")),
        };
        fn fields<T: serde::de::DeserializeOwned, E: serde::de::Error>(
            kind: &str,
            table: toml::Table,
        ) -> Result<T, E> {
            toml::Value::Table(table).try_into().map_err(|e| E::custom(format!("{kind}: {e}")))
        }
        let none = |table: &toml::Table| match table.keys().next() {
            Some(k) => Err(D::Error::custom(format!("{kind}: unknown field `{k}`, it has none"))),
            None => Ok(()),
        };
        match kind.as_str() {
            "color_jitter" => fields(&kind, table).map(Op::ColorJitter),
            "gaussian_blur" => fields(&kind, table).map(Op::GaussianBlur),
            "solarize" => fields::<SolarizeFields, _>(&kind, table)
                .map(|f| Op::Solarize { threshold: f.threshold }),
            "grayscale" => none(&table).map(|_| Op::Grayscale),
            "horizontal_flip" => none(&table).map(|_| Op::HorizontalFlip),
            other => Err(D::Error::custom(format!(
                "`kind` = {other:?} is no op; expected one of color_jitter, grayscale, \
                 gaussian_blur, solarize, horizontal_flip"
            ))),
        }
    }
}

/// `RandomApply(p, op)`: the op runs when a U(0,1) draw is below `p`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Probability of applying `op`.
    pub p: f64,
    /// What to apply.
    pub op: Op,
}

/// One view: a RandomResizedCrop to the output size, then the steps in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewRecipe {
    /// The crop sampler.
    pub crop: RandomResizedCrop,
    /// The steps after the crop, in order.
    pub steps: Vec<Step>,
}

/// A two-view recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Short name (`mocov3_vit`, …).
    pub name: String,
    /// Where the values come from.
    pub source: String,
    /// The first view.
    pub view1: ViewRecipe,
    /// The second view.
    pub view2: ViewRecipe,
}

fn step(p: f64, op: Op) -> Step {
    Step { p, op }
}

const BYOL_JITTER: ColorJitter =
    ColorJitter { brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1 };
const BLUR: GaussianBlur = GaussianBlur { sigma: (0.1, 2.0), method: BlurMethod::PilBox };

impl Recipe {
    /// Names of the presets, for help texts.
    pub const PRESETS: [&'static str; 4] = ["mocov3_vit", "mocov3_resnet", "byol", "simclr"];

    /// MoCo v3 for ViTs. Source: moco-v3 main_moco.py `augmentation1`/`augmentation2` (after
    /// BYOL), `--crop-min=.08`; ../shared/DESIGN.md "Two-view recipe".
    pub fn mocov3_vit() -> Self {
        Self::mocov3("mocov3_vit", 0.08)
    }

    /// MoCo v3 for ResNets: the same views with crop scale (0.2, 1). Source: moco-v3 CONFIG.md,
    /// ResNet-50 pre-training commands (`--crop-min=.2`).
    pub fn mocov3_resnet() -> Self {
        Self::mocov3("mocov3_resnet", 0.2)
    }

    fn mocov3(name: &str, crop_min: f64) -> Self {
        let crop = RandomResizedCrop::with_crop_min(crop_min);
        Self {
            name: name.to_owned(),
            source: "moco-v3 main_moco.py augmentation1/augmentation2 (BYOL's views)".to_owned(),
            view1: ViewRecipe {
                crop,
                steps: vec![
                    step(0.8, Op::ColorJitter(BYOL_JITTER)),
                    step(0.2, Op::Grayscale),
                    step(1.0, Op::GaussianBlur(BLUR)),
                    step(0.5, Op::HorizontalFlip),
                ],
            },
            view2: ViewRecipe {
                crop,
                steps: vec![
                    step(0.8, Op::ColorJitter(BYOL_JITTER)),
                    step(0.2, Op::Grayscale),
                    step(0.1, Op::GaussianBlur(BLUR)),
                    step(0.2, Op::Solarize { threshold: 128 }),
                    step(0.5, Op::HorizontalFlip),
                ],
            },
        }
    }

    /// BYOL. Source: Grill et al. 2020, Table 6 (appendix B): T (blur 1.0, solarize 0) and
    /// T' (blur 0.1, solarize 0.2); flip before the colour ops, as listed there.
    pub fn byol() -> Self {
        let crop = RandomResizedCrop::with_crop_min(0.08);
        Self {
            name: "byol".to_owned(),
            source: "BYOL (Grill et al. 2020) appendix B, Table 6".to_owned(),
            view1: ViewRecipe {
                crop,
                steps: vec![
                    step(0.5, Op::HorizontalFlip),
                    step(0.8, Op::ColorJitter(BYOL_JITTER)),
                    step(0.2, Op::Grayscale),
                    step(1.0, Op::GaussianBlur(BLUR)),
                ],
            },
            view2: ViewRecipe {
                crop,
                steps: vec![
                    step(0.5, Op::HorizontalFlip),
                    step(0.8, Op::ColorJitter(BYOL_JITTER)),
                    step(0.2, Op::Grayscale),
                    step(0.1, Op::GaussianBlur(BLUR)),
                    step(0.2, Op::Solarize { threshold: 128 }),
                ],
            },
        }
    }

    /// SimCLR (ImageNet). Source: Chen et al. 2020, appendix A: crop, flip, colour distortion of
    /// strength 1 (jitter 0.8/0.8/0.8/0.2 with p 0.8, grayscale p 0.2), blur p 0.5 with sigma
    /// in [0.1, 2.0]; both views alike.
    pub fn simclr() -> Self {
        let crop = RandomResizedCrop::with_crop_min(0.08);
        let jitter = ColorJitter { brightness: 0.8, contrast: 0.8, saturation: 0.8, hue: 0.2 };
        let view = ViewRecipe {
            crop,
            steps: vec![
                step(0.5, Op::HorizontalFlip),
                step(0.8, Op::ColorJitter(jitter)),
                step(0.2, Op::Grayscale),
                step(0.5, Op::GaussianBlur(BLUR)),
            ],
        };
        Self {
            name: "simclr".to_owned(),
            source: "SimCLR (Chen et al. 2020) appendix A".to_owned(),
            view1: view.clone(),
            view2: view,
        }
    }

    /// A preset by name.
    pub fn preset(name: &str) -> Result<Self, Error> {
        match name {
            "mocov3_vit" => Ok(Self::mocov3_vit()),
            "mocov3_resnet" => Ok(Self::mocov3_resnet()),
            "byol" => Ok(Self::byol()),
            "simclr" => Ok(Self::simclr()),
            _ => Err(Error::InvalidRecipe {
                recipe: name.to_owned(),
                reason: format!("no such preset; known: {}", Self::PRESETS.join(", ")),
            }),
        }
    }

    /// A preset name, or else the path of a TOML recipe file.
    pub fn preset_or_file(name_or_path: &str) -> Result<Self, Error> {
        if Self::PRESETS.contains(&name_or_path) {
            return Self::preset(name_or_path);
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            return Self::preset(name_or_path);
        }
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Io { path: path.to_owned(), source })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and validates a TOML recipe; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, Error> {
        let recipe: Self = toml::from_str(text)
            .map_err(|source| Error::RecipeParse { origin: origin.to_owned(), source })?;
        recipe.validate()?;
        Ok(recipe)
    }

    /// The recipe as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a recipe always serialises")
    }

    /// Checks every range, naming the offending field.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |reason: String| Err(Error::InvalidRecipe { recipe: self.name.clone(), reason });
        for (v, view) in [("view1", &self.view1), ("view2", &self.view2)] {
            let c = view.crop;
            if !(0.0 < c.scale.0 && c.scale.0 <= c.scale.1 && c.scale.1 <= 1.0) {
                return bad(format!("{v}.crop.scale {:?} must satisfy 0 < lo <= hi <= 1", c.scale));
            }
            if !(0.0 < c.ratio.0 && c.ratio.0 <= c.ratio.1 && c.ratio.1.is_finite()) {
                return bad(format!("{v}.crop.ratio {:?} must satisfy 0 < lo <= hi", c.ratio));
            }
            if view.steps.len() > MAX_STEPS {
                return bad(format!("{v} has {} steps, at most {MAX_STEPS}", view.steps.len()));
            }
            for (i, s) in view.steps.iter().enumerate() {
                if !(0.0..=1.0).contains(&s.p) {
                    return bad(format!("{v}.steps[{i}].p = {} is not in [0, 1]", s.p));
                }
                match s.op {
                    Op::ColorJitter(j) => {
                        let strengths = [
                            ("brightness", j.brightness),
                            ("contrast", j.contrast),
                            ("saturation", j.saturation),
                            ("hue", j.hue),
                        ];
                        for (name, x) in strengths {
                            // Factors are drawn in f64 and applied in f32: bounded, so that
                            // none becomes infinite there.
                            let max = if name == "hue" { 0.5 } else { MAX_STRENGTH };
                            if !(0.0..=max).contains(&x) {
                                return bad(format!(
                                    "{v}.steps[{i}].op.{name} = {x} must be in [0, {max}]"
                                ));
                            }
                        }
                    }
                    Op::GaussianBlur(b)
                        if !(0.0 <= b.sigma.0
                            && b.sigma.0 <= b.sigma.1
                            && b.sigma.1 <= MAX_SIGMA) =>
                    {
                        return bad(format!(
                            "{v}.steps[{i}].op.sigma {:?} must satisfy 0 <= lo <= hi <= {MAX_SIGMA}",
                            b.sigma
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}
