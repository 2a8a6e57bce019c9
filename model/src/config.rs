//! The training configuration: flat keys with the MoCo v3 ViT reference's defaults, layered
//! defaults < `--config` file < `--preset` < each `--set` ([`Layers`]), with every error naming
//! the layer and key at fault; moco-v3's argument names as aliases; which keys may change on
//! `--resume`; and the [`Plan`] a configuration resolves to against the data.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::Error;
use crate::moco::MocoConfig;
use crate::optim::OptimizerConfig;
use crate::schedule::Schedule;
use crate::vit::VitConfig;

/// Everything a run is configured by, as flat keys (TOML file, then `--set key=value`).
/// Defaults are the MoCo v3 ViT reference (DESIGN.md) except where noted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// `vit_tiny`, `vit_small`, `vit_base`, `vit_large`; the keys below override its shape.
    pub preset: String,
    pub image_size: Option<i64>,
    pub patch: Option<i64>,
    pub dim: Option<i64>,
    pub depth: Option<i64>,
    pub heads: Option<i64>,
    pub mlp_ratio: Option<i64>,
    pub mlp_dim: i64,
    pub out_dim: i64,
    pub temperature: f64,
    pub freeze_patch: bool,
    /// Global batch size (the reference: 4096; default here 256, one GPU).
    pub batch_size: usize,
    pub epochs: f64,
    pub warmup_epochs: f64,
    /// lr = base_lr × batch_size / 256.
    pub base_lr: f64,
    /// Momentum-encoder coefficient at the start (rises to 1 on a half cosine).
    pub momentum: f64,
    /// `adamw` or `lars`.
    pub optimizer: String,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// AdamW: also decay LayerNorm/BN weights and biases (the reference does).
    pub decay_norms_and_biases: bool,
    pub lars_momentum: f64,
    pub trust_coefficient: f64,
    /// Clip the global gradient norm to this; 0 = off (the reference does not clip).
    pub grad_clip: f64,
    /// `bf16` (autocast on CUDA; ignored on CPU unless `amp_on_cpu`) or `off`.
    pub amp: String,
    pub amp_on_cpu: bool,
    /// TF32 matmuls on CUDA.
    pub tf32: bool,
    pub seed: u64,
    /// Stop after this many steps (0 = the whole schedule); the schedule still spans `epochs`.
    pub max_steps: u64,
    /// Loader worker threads (0 = cores − 1) and batches prefetched.
    pub threads: usize,
    pub prefetch: usize,
    /// CPU threads of libtorch (0 = its default).
    pub torch_threads: i32,
    pub log_every: u64,
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    /// kNN on the val shards every this many steps and at the end (0 = only at the end).
    pub knn_every: u64,
    pub knn_k: i64,
    pub knn_temperature: f64,
    /// At most this many train / val images for kNN (0 = all).
    pub knn_train_limit: usize,
    pub knn_val_limit: usize,
    /// A first-layer gradient norm above this multiple of its running median is flagged.
    pub spike_factor: f64,
    /// Test hook: make the input of this step (1-based) NaN, to exercise the non-finite-loss
    /// path (0 = off).
    pub debug_nan_at_step: u64,
    /// A shard row that cannot be decoded: `fail` (stop, naming shard and row) or `replace`
    /// (use the next good row in its place, deterministically, and count it in the metrics).
    pub on_bad_row: String,
    /// Where the recipe's photometric steps run: `cpu` (the loader's workers, the default) or
    /// `device` (the loader crops and flips; jitter, grayscale, blur and solarize run as tensor
    /// ops on the training device, byte-identical). May change on resume.
    pub augment_on: String,
    /// JPEG shard rows decode at 1/2, 1/4 or 1/8 scale (libjpeg-turbo's DCT scaling) when both
    /// of a sample's crops still span the view size at that scale: faster on rows stored large,
    /// never used at the default short side 256 with 224² views; `false` always decodes at
    /// full size (the reference's bytes). May change on resume.
    pub dct_scaled_decode: bool,
}

/// moco-v3 `main_moco.py`'s argument names accepted for ours, so a reference command line
/// carries across (`moco_m=0.99` is `momentum=0.99`). Underscores as in `--set`; the
/// reference's dashes (`moco-m`) are accepted too.
pub const ALIASES: [(&str, &str); 8] = [
    ("moco_m", "momentum"),
    ("moco_t", "temperature"),
    ("moco_dim", "out_dim"),
    ("moco_mlp_dim", "mlp_dim"),
    ("stop_grad_conv1", "freeze_patch"),
    ("lr", "base_lr"),
    ("wd", "weight_decay"),
    ("arch", "preset"),
];

impl TrainConfig {
    /// Our name for `key`: itself, or what a moco-v3 name ([`ALIASES`]) stands for.
    pub fn canonical_key(key: &str) -> String {
        let k = key.replace('-', "_");
        ALIASES.iter().find(|(a, _)| *a == k).map_or(k, |(_, ours)| (*ours).to_owned())
    }
}

/// moco-v3 `main_moco.py`'s defaults for `--optimizer lars` (its ResNet recipe): lr 0.6 per 256
/// images, weight decay 1e-6. The ViT recipe (AdamW) is this crate's default: 1.5e-4 and 0.1.
pub const LARS_DEFAULTS: [(&str, f64); 2] = [("base_lr", 0.6), ("weight_decay", 1e-6)];

// DEVIATION: batch 256 and AdamW (the ViT recipe) by default, not 4096 and LARS
// (docs/deviations.md #8).
impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            preset: "vit_small".to_owned(),
            image_size: None,
            patch: None,
            dim: None,
            depth: None,
            heads: None,
            mlp_ratio: None,
            mlp_dim: 4096,
            out_dim: 256,
            temperature: 0.2,
            freeze_patch: true,
            batch_size: 256,
            epochs: 300.0,
            warmup_epochs: 40.0,
            base_lr: 1.5e-4,
            momentum: 0.99,
            optimizer: "adamw".to_owned(),
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            decay_norms_and_biases: true,
            lars_momentum: 0.9,
            trust_coefficient: 0.001,
            grad_clip: 0.0,
            amp: "bf16".to_owned(),
            amp_on_cpu: false,
            tf32: true,
            seed: 0,
            max_steps: 0,
            threads: 0,
            prefetch: 4,
            torch_threads: 0,
            log_every: 10,
            checkpoint_every: 500,
            keep_checkpoints: 3,
            knn_every: 0,
            knn_k: 20,
            knn_temperature: 0.07,
            knn_train_limit: 0,
            knn_val_limit: 0,
            spike_factor: 10.0,
            debug_nan_at_step: 0,
            on_bad_row: "fail".to_owned(),
            augment_on: "cpu".to_owned(),
            dct_scaled_decode: true,
        }
    }
}

/// A configuration resolved against the data: model shape, scaled lr, steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub config: TrainConfig,
    pub moco: MocoConfig,
    pub optimizer: OptimizerConfig,
    pub schedule: Schedule,
    /// Steps this run takes (max_steps or the whole schedule).
    pub steps: u64,
    pub train_images: u64,
    /// Mixed precision in effect on the chosen device.
    pub autocast: bool,
}

impl TrainConfig {
    /// Keys that may change on `--resume`; the others define the method and are fixed by the
    /// run's first start.
    pub const RUN_KEYS: [&str; 15] = [
        "max_steps",
        "augment_on",
        "dct_scaled_decode",
        "on_bad_row",
        "threads",
        "prefetch",
        "torch_threads",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "knn_every",
        "knn_k",
        "knn_temperature",
        "knn_train_limit",
        "knn_val_limit",
    ];

    /// The configuration from flat keys over the defaults; errors name `origin`, unknown keys
    /// list the known ones.
    pub fn from_table(table: toml::Table, origin: &str) -> Result<Self, Error> {
        Self::from_table_noted(table, origin).map(|(c, _)| c)
    }

    /// As [`TrainConfig::from_table`], and what was filled in for the user: choosing an
    /// optimizer brings its reference hyperparameters ([`LARS_DEFAULTS`]) for every one of them
    /// the table does not set. The notes say which, for the plan print.
    pub fn from_table_noted(
        table: toml::Table,
        origin: &str,
    ) -> Result<(Self, Vec<String>), Error> {
        let given: HashSet<String> = table.keys().cloned().collect();
        // toml's message ends with the key at fault (`in \`base_lr\``); keep all of it.
        let mut c: Self = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
            let message = e.to_string().trim().replace('\n', " ");
            Error::Config { origin: origin.to_owned(), key: None, message }
        })?;
        let mut notes = Vec::new();
        if c.optimizer == "lars" {
            for (key, value) in LARS_DEFAULTS {
                if given.contains(key) {
                    continue;
                }
                match key {
                    "base_lr" => c.base_lr = value,
                    _ => c.weight_decay = value,
                }
                notes.push(format!("{key} = {value} (moco-v3's LARS default; set it to override)"));
            }
        }
        Ok((c, notes))
    }

    fn vit(&self) -> Result<VitConfig, Error> {
        let base = VitConfig::preset(&self.preset).ok_or_else(|| {
            let all = VitConfig::PRESETS.join(", ");
            Error::config("preset", format!("unknown preset {:?}; one of {all}", self.preset))
        })?;
        let vit = VitConfig {
            image_size: self.image_size.unwrap_or(base.image_size),
            patch: self.patch.unwrap_or(base.patch),
            dim: self.dim.unwrap_or(base.dim),
            depth: self.depth.unwrap_or(base.depth),
            heads: self.heads.unwrap_or(base.heads),
            mlp_ratio: self.mlp_ratio.unwrap_or(base.mlp_ratio),
        };
        vit.check().map_err(|(key, message)| Error::config(key, message))?;
        Ok(vit)
    }

    fn optimizer_config(&self) -> Result<OptimizerConfig, Error> {
        Ok(match self.optimizer.as_str() {
            "adamw" => OptimizerConfig::Adamw {
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                weight_decay: self.weight_decay,
                decay_norms_and_biases: self.decay_norms_and_biases,
            },
            "lars" => OptimizerConfig::Lars {
                momentum: self.lars_momentum,
                trust_coefficient: self.trust_coefficient,
                weight_decay: self.weight_decay,
            },
            o => {
                return Err(Error::config(
                    "optimizer",
                    format!("unknown optimizer {o:?}; adamw or lars"),
                ));
            }
        })
    }

    /// The checks of values that deserialise but cannot be trained with.
    fn check_values(&self, train_images: u64) -> Result<(), Error> {
        if self.batch_size < 2 {
            let m = format!("{} < 2: the contrastive loss needs negatives", self.batch_size);
            return Err(Error::config("batch_size", m));
        }
        if train_images < self.batch_size as u64 {
            let m = format!(
                "{} is larger than the {train_images} training images (batches drop the last \
                 partial one)",
                self.batch_size
            );
            return Err(Error::config("batch_size", m));
        }
        if self.epochs.is_nan() || self.epochs <= 0.0 {
            return Err(Error::config("epochs", format!("must be > 0, got {}", self.epochs)));
        }
        if !(0.0..=self.epochs).contains(&self.warmup_epochs) {
            let m = format!(
                "need 0 ≤ warmup_epochs ≤ epochs ({}), got {}",
                self.epochs, self.warmup_epochs
            );
            return Err(Error::config("warmup_epochs", m));
        }
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(Error::config("momentum", format!("{} is outside [0, 1]", self.momentum)));
        }
        if !matches!(self.augment_on.as_str(), "cpu" | "device") {
            let m = format!("{:?}: cpu or device", self.augment_on);
            return Err(Error::config("augment_on", m));
        }
        if !matches!(self.on_bad_row.as_str(), "fail" | "replace") {
            let m = format!("unknown policy {:?}; fail or replace", self.on_bad_row);
            return Err(Error::config("on_bad_row", m));
        }
        Ok(())
    }

    /// Resolves the configuration for `train_images` images per epoch on `device`. Errors name
    /// the key at fault ([`Layers::plan`] adds who gave it).
    pub fn plan(&self, train_images: u64, device: Device) -> Result<Plan, Error> {
        let vit = self.vit()?;
        self.check_values(train_images)?;
        let optimizer = self.optimizer_config()?;
        let autocast = match self.amp.as_str() {
            "off" => false,
            "bf16" => device.is_cuda() || self.amp_on_cpu,
            a => return Err(Error::config("amp", format!("unknown amp {a:?}; bf16 or off"))),
        };
        let steps_per_epoch = train_images / self.batch_size as u64;
        let schedule = Schedule {
            lr: self.base_lr * self.batch_size as f64 / 256.0,
            warmup_epochs: self.warmup_epochs,
            epochs: self.epochs,
            steps_per_epoch,
            momentum: self.momentum,
        };
        let total = schedule.total_steps().max(1);
        let steps = if self.max_steps > 0 { self.max_steps.min(total) } else { total };
        let moco = MocoConfig {
            vit,
            mlp_dim: self.mlp_dim,
            out_dim: self.out_dim,
            temperature: self.temperature,
            freeze_patch: self.freeze_patch,
        };
        Ok(Plan { config: self.clone(), moco, optimizer, schedule, steps, train_images, autocast })
    }
}

/// Who gave a configuration key.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A `--config` TOML file.
    File(PathBuf),
    /// `--preset NAME`.
    Preset,
    /// One `--set KEY=VALUE`, as typed.
    Set(String),
    /// The configuration a run saved in its checkpoint (`--resume`).
    Saved,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "--config {}", p.display()),
            Origin::Preset => f.write_str("--preset"),
            Origin::Set(kv) => write!(f, "--set {kv}"),
            Origin::Saved => f.write_str("the run's saved configuration"),
        }
    }
}

/// The configuration as layers over the defaults, later layers winning: `--config` file, then
/// `--preset`, then each `--set` in order. Keys are canonical ([`TrainConfig::canonical_key`]).
#[derive(Debug, Clone, Default)]
pub struct Layers {
    layers: Vec<(Origin, toml::Table)>,
}

/// `VALUE` of `--set KEY=VALUE`: a TOML literal (number, bool, quoted string) or, failing
/// that, a bare string.
fn set_value(v: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {v}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(v.trim().to_owned()))
}

impl Layers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a `--config` TOML file's keys.
    pub fn file(mut self, path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(Error::file("cannot read", path))?;
        let origin = Origin::File(path.to_owned());
        let table = toml::from_str::<toml::Table>(&text).map_err(|e| Error::Config {
            origin: origin.to_string(),
            key: None,
            message: format!("not valid TOML: {e}"),
        })?;
        let table = table.into_iter().map(|(k, v)| (TrainConfig::canonical_key(&k), v)).collect();
        self.push(origin, table)?;
        Ok(self)
    }

    /// Adds `--preset NAME`.
    pub fn preset(mut self, name: &str) -> Result<Self, Error> {
        let table = toml::Table::from_iter([("preset".to_owned(), name.into())]);
        self.push(Origin::Preset, table)?;
        Ok(self)
    }

    /// Adds one `--set KEY=VALUE`.
    pub fn set(mut self, kv: &str) -> Result<Self, Error> {
        let origin = Origin::Set(kv.to_owned());
        let (k, v) = kv.split_once('=').ok_or_else(|| Error::Config {
            origin: origin.to_string(),
            key: None,
            message: "expected KEY=VALUE".into(),
        })?;
        let table = toml::Table::from_iter([(TrainConfig::canonical_key(k.trim()), set_value(v))]);
        self.push(origin, table)?;
        Ok(self)
    }

    /// Adds a layer after checking it alone (unknown keys, wrong types), so that the error
    /// names this layer.
    fn push(&mut self, origin: Origin, table: toml::Table) -> Result<(), Error> {
        TrainConfig::from_table(table.clone(), &origin.to_string())?;
        self.layers.push((origin, table));
        Ok(())
    }

    /// Every key given, the last layer winning.
    pub fn merged(&self) -> toml::Table {
        let mut out = toml::Table::new();
        for (_, t) in &self.layers {
            out.extend(t.clone());
        }
        out
    }

    /// Who gave `key` last, if anyone did.
    pub fn origin_of(&self, key: &str) -> Option<&Origin> {
        self.layers.iter().rev().find(|(_, t)| t.contains_key(key)).map(|(o, _)| o)
    }

    /// The configuration of a new run, and the notes of what was filled in for the user.
    pub fn resolve(&self) -> Result<(TrainConfig, Vec<String>), Error> {
        TrainConfig::from_table_noted(self.merged(), "configuration")
    }

    /// The configuration of a resumed run: `saved` with these layers on top. Run keys
    /// ([`TrainConfig::RUN_KEYS`]) may change; method keys may be repeated (rerunning the same
    /// command with `--resume` works) but not changed.
    pub fn resolve_on_resume(&self, saved: &TrainConfig) -> Result<TrainConfig, Error> {
        let saved_table = toml::Table::try_from(saved).expect("a TrainConfig is a TOML table");
        let mut table = saved_table.clone();
        for (k, v) in self.merged() {
            let same = saved_table.get(&k).is_some_and(|old| {
                old == &v
                    || matches!((old, &v), (toml::Value::Float(a), toml::Value::Integer(b)) if *a == *b as f64)
            });
            if !same && !TrainConfig::RUN_KEYS.contains(&k.as_str()) {
                let old = saved_table.get(&k).map_or("unset".to_owned(), |o| o.to_string());
                return Err(Error::Config {
                    origin: self.origin_of(&k).map_or("--resume".into(), |o| o.to_string()),
                    key: Some(k),
                    message: format!(
                        "cannot change on --resume (the run has {old}; it defines the method); \
                         keys that can: {}",
                        TrainConfig::RUN_KEYS.join(", ")
                    ),
                });
            }
            table.insert(k, v);
        }
        TrainConfig::from_table(table, &Origin::Saved.to_string())
    }

    /// [`TrainConfig::plan`], its errors naming the layer that gave the key at fault.
    pub fn plan(
        &self,
        config: &TrainConfig,
        train_images: u64,
        device: Device,
    ) -> Result<Plan, Error> {
        config.plan(train_images, device).map_err(|e| match e {
            Error::Config { key: Some(key), message, .. } => Error::Config {
                origin: self.origin_of(&key).map_or("configuration".to_owned(), |o| o.to_string()),
                key: Some(key),
                message,
            },
            e => e,
        })
    }
}

/// A ViT small enough for unit tests: 16 px, 2×2 patches of 8, dim 16, one block, batch 4.
#[cfg(test)]
pub(crate) fn tiny() -> TrainConfig {
    TrainConfig {
        image_size: Some(16),
        patch: Some(8),
        dim: Some(16),
        depth: Some(1),
        heads: Some(2),
        mlp_dim: 32,
        out_dim: 8,
        batch_size: 4,
        ..TrainConfig::default()
    }
}

#[cfg(test)]
mod tests;
