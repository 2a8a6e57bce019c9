//! The training configuration, its resolved plan, and one MoCo v3 step (schedules, forward,
//! backward, gradient norms, optional clipping, optimizer), with the state a checkpoint needs.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::amp::Autocast;
use crate::checkpoint::Loaded;
use crate::moco::{Moco, MocoConfig, normalize_views};
use crate::optim::{Optimizer, OptimizerConfig, global_norm};
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
    /// The configuration from flat keys (a `--config` file's table with `--set` on top); every
    /// error names `origin` and the key (`in \`base_lr\``), unknown keys list the known ones.
    pub fn from_table(table: toml::Table, origin: &str) -> Result<Self, String> {
        Self::from_table_noted(table, origin).map(|(c, _)| c)
    }

    /// As [`TrainConfig::from_table`], and what was filled in for the user: choosing an
    /// optimizer brings its reference hyperparameters ([`LARS_DEFAULTS`]) for every one of them
    /// the table does not set. The notes say which, for the plan print.
    pub fn from_table_noted(
        table: toml::Table,
        origin: &str,
    ) -> Result<(Self, Vec<String>), String> {
        let given: std::collections::HashSet<String> = table.keys().cloned().collect();
        let mut c: Self =
            toml::Value::Table(table).try_into().map_err(|e| format!("{origin}: {e}"))?;
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

    /// Resolves the configuration for `train_images` images per epoch on `device`.
    pub fn plan(&self, train_images: u64, device: Device) -> Result<Plan, String> {
        let base = VitConfig::preset(&self.preset).ok_or_else(|| {
            format!("unknown preset {:?}; one of {}", self.preset, VitConfig::PRESETS.join(", "))
        })?;
        let vit = VitConfig {
            image_size: self.image_size.unwrap_or(base.image_size),
            patch: self.patch.unwrap_or(base.patch),
            dim: self.dim.unwrap_or(base.dim),
            depth: self.depth.unwrap_or(base.depth),
            heads: self.heads.unwrap_or(base.heads),
            mlp_ratio: self.mlp_ratio.unwrap_or(base.mlp_ratio),
        };
        vit.check()?;
        if self.batch_size < 2 {
            return Err(format!(
                "batch_size {} < 2: the contrastive loss needs negatives",
                self.batch_size
            ));
        }
        if train_images < self.batch_size as u64 {
            return Err(format!(
                "batch_size {} is larger than the {train_images} training images (batches drop the last partial one)",
                self.batch_size
            ));
        }
        let ok =
            self.epochs > 0.0 && self.warmup_epochs >= 0.0 && self.warmup_epochs <= self.epochs;
        if !ok {
            return Err(format!(
                "need epochs > 0 and 0 ≤ warmup_epochs ≤ epochs, got {} and {}",
                self.epochs, self.warmup_epochs
            ));
        }
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(format!("momentum {} is outside [0, 1]", self.momentum));
        }
        let optimizer = match self.optimizer.as_str() {
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
            o => return Err(format!("unknown optimizer {o:?}; adamw or lars")),
        };
        if !matches!(self.on_bad_row.as_str(), "fail" | "replace") {
            return Err(format!("unknown on_bad_row {:?}; fail or replace", self.on_bad_row));
        }
        let autocast = match self.amp.as_str() {
            "off" => false,
            "bf16" => device.is_cuda() || self.amp_on_cpu,
            a => return Err(format!("unknown amp {a:?}; bf16 or off")),
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

/// What one step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    pub loss: f64,
    pub lr: f64,
    pub momentum: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Gradient norm of the first trained layer (patch projection, or block 0 when frozen).
    pub grad_norm_first: f64,
}

/// The loss was NaN or infinite: nothing was applied to the online weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NonFinite {
    pub step: u64,
    pub loss: f64,
}

/// Model, optimizer and step counter.
#[derive(Debug)]
pub struct Trainer {
    pub plan: Plan,
    pub moco: Moco,
    pub opt: Optimizer,
    /// Steps taken so far.
    pub step: u64,
    pub device: Device,
    first_layer: Vec<String>,
    /// Everything the forward pass changes before the loss is known -- the momentum encoder
    /// (its update comes before the keys, as in the reference) and every BatchNorm's running
    /// statistics -- paired with a copy taken before each step, so that a non-finite step is
    /// undone exactly. One copy of the momentum encoder in memory; one device copy per step.
    guard: Vec<(Tensor, Tensor)>,
}

impl Trainer {
    /// Seeds torch with `plan.config.seed` and builds the model with the reference init.
    pub fn new(plan: Plan, device: Device) -> Self {
        tch::manual_seed(plan.config.seed as i64);
        let moco = Moco::new(plan.moco, device);
        let params = moco.trainable();
        let prefix = if plan.moco.freeze_patch {
            "base_encoder.blocks.0."
        } else {
            "base_encoder.patch_embed."
        };
        let first_layer =
            params.iter().filter(|(n, _)| n.starts_with(prefix)).map(|(n, _)| n.clone()).collect();
        let trainable: std::collections::HashSet<&String> = params.iter().map(|(n, _)| n).collect();
        let guard = moco
            .named_tensors()
            .into_iter()
            .filter(|(n, _)| !trainable.contains(n))
            .map(|(_, t)| {
                let copy = t.detach().copy();
                (t, copy)
            })
            .collect();
        let opt = Optimizer::new(plan.optimizer, params);
        Self { plan, moco, opt, step: 0, device, first_layer, guard }
    }

    /// Which parameters the first-layer gradient norm covers.
    pub fn first_layer_names(&self) -> &[String] {
        &self.first_layer
    }

    /// Float views from a `[B, 2, S, S, 3]` u8 batch already on the device.
    pub fn views(&self, u8_batch: &Tensor) -> (Tensor, Tensor) {
        normalize_views(u8_batch, Kind::Float)
    }

    /// One training step on a u8 two-view batch on the device. On a non-finite loss nothing is
    /// applied: the online weights, the optimizer state, the momentum encoder, the BatchNorm
    /// statistics and the step counter are as they were before the call.
    pub fn train_step(&mut self, u8_batch: &Tensor) -> Result<StepStats, NonFinite> {
        let lr = self.plan.schedule.lr(self.step);
        let m = self.plan.schedule.momentum(self.step);
        let (mut x1, x2) = self.views(u8_batch);
        if self.plan.config.debug_nan_at_step == self.step + 1 {
            x1 *= f64::NAN;
        }
        tch::no_grad(|| {
            for (live, copy) in &self.guard {
                copy.shallow_clone().copy_(live);
            }
        });
        self.opt.zero_grad();
        let out = {
            // DEVIATION: bf16 autocast without a GradScaler (moco-v3: fp16 + GradScaler);
            // docs/deviations.md #1.
            let _amp = self.plan.autocast.then(|| Autocast::new(self.device, Kind::BFloat16));
            self.moco.forward(&x1, &x2, m)
        };
        let loss = out.loss.double_value(&[]);
        if !loss.is_finite() {
            // DEVIATION: the reference trains on; we stop and undo the step (deviations #7).
            tch::no_grad(|| {
                for (live, copy) in &self.guard {
                    live.shallow_clone().copy_(copy);
                }
            });
            return Err(NonFinite { step: self.step, loss });
        }
        out.loss.backward();
        let grads = self.opt.grads();
        let first = global_norm(
            grads.iter().filter(|(n, _)| self.first_layer.iter().any(|f| f == n)).map(|(_, g)| g),
        );
        let grad_norm = if self.plan.config.grad_clip > 0.0 {
            self.opt.clip_grad_norm(self.plan.config.grad_clip)
        } else {
            global_norm(grads.iter().map(|(_, g)| g))
        };
        self.opt.step(lr);
        self.step += 1;
        Ok(StepStats { loss, lr, momentum: m, grad_norm, grad_norm_first: first })
    }

    /// Everything a checkpoint holds as tensors: model variables by name, optimizer state
    /// under `optim.`.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v = self.moco.named_tensors();
        v.extend(self.opt.state_tensors().into_iter().map(|(n, t)| (format!("optim.{n}"), t)));
        v
    }

    /// Restores model and optimizer from a checkpoint taken after `step` steps.
    pub fn restore(&mut self, loaded: &Loaded, step: u64) -> Result<(), String> {
        self.moco.load_named(&loaded.tensors)?;
        let optim: HashMap<String, Tensor> = loaded
            .tensors
            .iter()
            .filter_map(|(n, t)| {
                n.strip_prefix("optim.").map(|s| (s.to_owned(), t.shallow_clone()))
            })
            .collect();
        self.opt.load_state(&optim, step as i64)?;
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lars_brings_its_own_defaults_unless_they_are_set() {
        let table = |text: &str| toml::from_str::<toml::Table>(text).unwrap();
        let (c, notes) =
            TrainConfig::from_table_noted(table(r#"optimizer = "lars""#), "t").unwrap();
        assert_eq!((c.base_lr, c.weight_decay, notes.len()), (0.6, 1e-6, 2), "{notes:?}");
        assert!(notes[0].contains("base_lr = 0.6"), "{notes:?}");
        let (c, notes) =
            TrainConfig::from_table_noted(table("optimizer = \"lars\"\nbase_lr = 0.3"), "t")
                .unwrap();
        assert_eq!((c.base_lr, c.weight_decay, notes.len()), (0.3, 1e-6, 1));
        let (c, notes) = TrainConfig::from_table_noted(table(""), "t").unwrap();
        assert_eq!((c.base_lr, c.weight_decay, notes.len()), (1.5e-4, 0.1, 0));
    }

    #[test]
    fn moco_v3_names_are_accepted_for_ours() {
        assert_eq!(TrainConfig::canonical_key("moco_m"), "momentum");
        assert_eq!(TrainConfig::canonical_key("moco-t"), "temperature");
        assert_eq!(TrainConfig::canonical_key("stop-grad-conv1"), "freeze_patch");
        assert_eq!(TrainConfig::canonical_key("base_lr"), "base_lr");
        // Every alias names a real key.
        let known = toml::Table::try_from(TrainConfig::default()).unwrap();
        for (alias, ours) in ALIASES {
            assert!(known.contains_key(ours), "{alias} -> {ours}");
        }
    }

    #[test]
    fn a_non_finite_step_changes_nothing() {
        let cfg = TrainConfig {
            image_size: Some(16),
            patch: Some(8),
            dim: Some(16),
            depth: Some(1),
            heads: Some(2),
            mlp_dim: 32,
            out_dim: 8,
            batch_size: 4,
            debug_nan_at_step: 3,
            ..TrainConfig::default()
        };
        let plan = cfg.plan(16, Device::Cpu).unwrap();
        let mut t = Trainer::new(plan, Device::Cpu);
        tch::manual_seed(7);
        let batch = Tensor::randint(256, [4, 2, 16, 16, 3], (Kind::Uint8, Device::Cpu));
        t.train_step(&batch).unwrap();
        t.train_step(&batch).unwrap();
        let before: Vec<(String, Tensor)> =
            t.state_tensors().into_iter().map(|(n, x)| (n, x.detach().copy())).collect();
        let err = t.train_step(&batch).unwrap_err();
        assert_eq!((err.step, t.step), (2, 2));
        let after = t.state_tensors();
        assert_eq!(before.len(), after.len());
        for ((n, a), (m, b)) in before.iter().zip(&after) {
            assert_eq!(n, m);
            assert!(a.equal(b), "{n} changed in the non-finite step");
        }
        assert!(
            after.iter().any(|(n, _)| n.starts_with("momentum_encoder."))
                && after.iter().any(|(n, _)| n.contains("running_mean")),
            "the comparison covers the momentum encoder and BN statistics"
        );
    }
}
