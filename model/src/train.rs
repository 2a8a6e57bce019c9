//! The training configuration, its resolved plan, and one MoCo v3 step (schedules, forward,
//! backward, gradient norms, optional clipping, optimizer), with the state a checkpoint needs.

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use crate::Error;
use crate::amp::Autocast;
use crate::checkpoint::Loaded;
pub use crate::config::{ALIASES, LARS_DEFAULTS, Layers, Origin, Plan, TrainConfig};
use crate::moco::{Moco, normalize_views};
use crate::optim::{Optimizer, global_norm};

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

    /// Restores model, optimizer and step counter from a checkpoint; errors name the
    /// checkpoint and the tensor.
    pub fn restore(&mut self, loaded: &Loaded) -> Result<(), Error> {
        self.moco.load_named(&loaded.tensors).map_err(|m| m.at(&loaded.dir))?;
        let optim: HashMap<String, Tensor> = loaded
            .tensors
            .iter()
            .filter_map(|(n, t)| {
                n.strip_prefix("optim.").map(|s| (s.to_owned(), t.shallow_clone()))
            })
            .collect();
        let opt_steps = loaded.state.optimizer_steps;
        self.opt.load_state(&optim, opt_steps).map_err(|m| m.at(&loaded.dir))?;
        self.step = loaded.step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_finite_step_changes_nothing() {
        let cfg = TrainConfig { debug_nan_at_step: 3, ..crate::config::tiny() };
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
