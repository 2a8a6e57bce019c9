//! Optimizers written over tensors, with state that can be saved and restored (tch's own
//! optimizers cannot export theirs, and a resumable trainer needs it).
//!
//! AdamW is libtorch's fused multi-tensor kernel (`torch.optim.AdamW(fused=True)`, through the
//! shim): one kernel chain per weight-decay group, whatever the number of tensors, and it skips
//! itself on the device when a found-inf flag is set. Zeroing, norms and clipping are
//! multi-tensor ops too, and return tensors: nothing here waits for the device. LARS (MoCo v3's
//! ResNet recipe) follows the reference per tensor, masked on the device the same way.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::shim;

/// Which optimizer, with its hyper-parameters (the learning rate comes per step).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// `torch.optim.AdamW`; the reference uses betas (0.9, 0.999), eps 1e-8, weight decay 0.1
    /// on every parameter.
    Adamw { beta1: f64, beta2: f64, eps: f64, weight_decay: f64, decay_norms_and_biases: bool },
    /// MoCo v3's LARS (its ResNet recipe): momentum 0.9, trust coefficient 0.001; weight decay
    /// and adaptation skip 1-D parameters.
    Lars { momentum: f64, trust_coefficient: f64, weight_decay: f64 },
}

impl OptimizerConfig {
    /// The ViT reference: AdamW (0.9, 0.999), eps 1e-8, weight decay 0.1 on all parameters.
    pub fn adamw_reference() -> Self {
        Self::Adamw {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
            decay_norms_and_biases: true,
        }
    }

    /// The ResNet reference's LARS: momentum 0.9, trust 0.001, weight decay 1e-6.
    pub fn lars_reference() -> Self {
        Self::Lars { momentum: 0.9, trust_coefficient: 0.001, weight_decay: 1e-6 }
    }
}

/// One optimized tensor and its state.
struct Slot {
    name: String,
    param: Tensor,
    /// AdamW: exp_avg; LARS: mu (momentum buffer).
    a: Tensor,
    /// AdamW: exp_avg_sq; LARS: unused (empty).
    b: Option<Tensor>,
}

/// An optimizer over named parameters.
pub struct Optimizer {
    config: OptimizerConfig,
    slots: Vec<Slot>,
    /// Steps taken (AdamW's bias correction uses it).
    pub steps: i64,
    /// `steps` as the fused kernel reads it: a float tensor on the parameters' device.
    step_tensor: Tensor,
}

impl std::fmt::Debug for Optimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Optimizer")
            .field("config", &self.config)
            .field("params", &self.slots.len())
            .field("steps", &self.steps)
            .finish()
    }
}

impl Optimizer {
    /// State starts at zero, as PyTorch's does on the first step.
    pub fn new(config: OptimizerConfig, params: Vec<(String, Tensor)>) -> Self {
        let slots = params
            .into_iter()
            .map(|(name, param)| {
                let a = param.zeros_like().detach();
                let b = matches!(config, OptimizerConfig::Adamw { .. })
                    .then(|| param.zeros_like().detach());
                Slot { name, param, a, b }
            })
            .collect::<Vec<_>>();
        let device = slots.first().map_or(tch::Device::Cpu, |s| s.param.device());
        let step_tensor = Tensor::zeros([1], (tch::Kind::Float, device));
        Self { config, slots, steps: 0, step_tensor }
    }

    pub fn config(&self) -> OptimizerConfig {
        self.config
    }

    /// Zeroes every parameter's gradient in place (one multi-tensor op).
    pub fn zero_grad(&mut self) {
        let grads: Vec<Tensor> = self.grads().into_iter().map(|(_, g)| g).collect();
        shim::foreach_zero_(&grads.iter().collect::<Vec<_>>()).expect("zero gradients");
    }

    /// (name, gradient) of every parameter that has one.
    pub fn grads(&self) -> Vec<(&str, Tensor)> {
        self.slots
            .iter()
            .filter_map(|s| {
                let g = s.param.grad();
                g.defined().then_some((s.name.as_str(), g))
            })
            .collect()
    }

    /// One step with learning rate `lr`. Parameters without a gradient are skipped, as in
    /// PyTorch.
    pub fn step(&mut self, lr: f64) {
        self.step_masked(lr, None);
    }

    /// [`Optimizer::step`], applied only where `found_inf` (a one-element float tensor on the
    /// device) is 0: with 1 the parameters and the state stay as they were, decided on the
    /// device (no host sync).
    pub fn step_masked(&mut self, lr: f64, found_inf: Option<&Tensor>) {
        self.steps += 1;
        match self.config {
            OptimizerConfig::Adamw { beta1, beta2, eps, weight_decay, decay_norms_and_biases } => {
                let _ = self.step_tensor.fill_(self.steps as f64);
                let h = shim::AdamwStep { lr, beta1, beta2, weight_decay, eps };
                for decayed in [true, false] {
                    let group: Vec<(&Slot, Tensor)> = self
                        .slots
                        .iter()
                        .filter(|s| (decay_norms_and_biases || s.param.dim() > 1) == decayed)
                        .filter_map(|s| {
                            let g = s.param.grad();
                            g.defined().then_some((s, g))
                        })
                        .collect();
                    if group.is_empty() {
                        continue;
                    }
                    let params: Vec<&Tensor> = group.iter().map(|(s, _)| &s.param).collect();
                    let grads: Vec<&Tensor> = group.iter().map(|(_, g)| g).collect();
                    let m: Vec<&Tensor> = group.iter().map(|(s, _)| &s.a).collect();
                    let v: Vec<&Tensor> = group
                        .iter()
                        .map(|(s, _)| s.b.as_ref().expect("AdamW has a second moment"))
                        .collect();
                    let h = shim::AdamwStep {
                        weight_decay: if decayed { weight_decay } else { 0.0 },
                        ..h
                    };
                    tch::no_grad(|| {
                        shim::fused_adamw_(&params, &grads, &m, &v, &self.step_tensor, h, found_inf)
                    })
                    .expect("fused AdamW over tensors of one device and dtype");
                }
            }
            OptimizerConfig::Lars { momentum, trust_coefficient, weight_decay } => {
                let keep = found_inf.map(|f| f.gt(0.5));
                tch::no_grad(|| {
                    for s in &mut self.slots {
                        let grad = s.param.grad();
                        if grad.defined() {
                            let c = LarsStep { lr, momentum, trust_coefficient, weight_decay };
                            lars_one(s, &grad, c, keep.as_ref());
                        }
                    }
                });
            }
        }
    }

    /// The state as named tensors (`<param>.exp_avg`, `<param>.exp_avg_sq` or `<param>.mu`).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for s in &self.slots {
            match &s.b {
                Some(b) => {
                    out.push((format!("{}.exp_avg", s.name), s.a.shallow_clone()));
                    out.push((format!("{}.exp_avg_sq", s.name), b.shallow_clone()));
                }
                None => out.push((format!("{}.mu", s.name), s.a.shallow_clone())),
            }
        }
        out
    }

    /// Restores what [`Optimizer::state_tensors`] gave, and the step count.
    pub fn load_state(
        &mut self,
        named: &HashMap<String, Tensor>,
        steps: i64,
    ) -> Result<(), crate::error::Mismatch> {
        let want = self.state_tensors();
        tch::no_grad(|| {
            for (name, mut t) in want {
                let tensor = format!("optim.{name}");
                let Some(src) = named.get(&name) else {
                    let message = "missing (optimizer state)".into();
                    return Err(crate::error::Mismatch { tensor, message });
                };
                if src.size() != t.size() {
                    let message =
                        format!("shape {:?}, the optimizer has {:?}", src.size(), t.size());
                    return Err(crate::error::Mismatch { tensor, message });
                }
                t.copy_(src);
            }
            Ok(())
        })?;
        self.steps = steps;
        Ok(())
    }

    /// Scales every gradient so that their global L2 norm is at most `max_norm`
    /// (`clip_grad_norm_`: × min(1, max_norm / (norm + 1e-6))), and returns the norm before
    /// clipping, on the device.
    pub fn clip_grad_norm(&self, max_norm: f64) -> Tensor {
        let grads: Vec<Tensor> = self.grads().into_iter().map(|(_, g)| g).collect();
        let refs: Vec<&Tensor> = grads.iter().collect();
        let norm = norm_of_norms(&norms(&refs));
        let coef = (max_norm / (&norm + 1e-6)).clamp_max(1.0);
        tch::no_grad(|| shim::foreach_mul_(&refs, &coef)).expect("scale gradients");
        norm
    }
}

/// One LARS step of MoCo v3's `LARS.step` for one tensor, kept as it was where `keep` (a
/// one-element bool tensor) is true.
#[derive(Debug, Clone, Copy)]
struct LarsStep {
    lr: f64,
    momentum: f64,
    trust_coefficient: f64,
    weight_decay: f64,
}

fn lars_one(s: &mut Slot, grad: &Tensor, c: LarsStep, keep: Option<&Tensor>) {
    let mut dp = grad.shallow_clone();
    if s.param.dim() > 1 {
        dp = &dp + &s.param * c.weight_decay;
        let pn = s.param.norm();
        let un = dp.norm();
        let one = pn.ones_like();
        // where(pn > 0, where(un > 0, tc·pn/un, 1), 1)
        let inner = (&pn * c.trust_coefficient / &un).where_self(&un.gt(0.0), &one);
        let q = inner.where_self(&pn.gt(0.0), &one);
        dp *= q;
    }
    let mu = &s.a * c.momentum + &dp;
    let p = &s.param + &mu * (-c.lr);
    match keep {
        Some(k) => {
            s.a.copy_(&s.a.where_self(k, &mu));
            s.param.shallow_clone().copy_(&s.param.where_self(k, &p));
        }
        None => {
            s.a.copy_(&mu);
            s.param.shallow_clone().copy_(&p);
        }
    }
}

/// The L2 norm of each tensor, `[n]` fp32 on their device (one multi-tensor op).
pub fn norms(ts: &[&Tensor]) -> Tensor {
    if ts.is_empty() {
        return Tensor::zeros([0], (tch::Kind::Float, tch::Device::Cpu));
    }
    tch::no_grad(|| shim::foreach_norm(ts)).expect("norms of tensors on one device")
}

/// √Σ nᵢ² of per-tensor norms `[n]`: the global norm, a 0-dim fp32 tensor.
pub fn norm_of_norms(norms: &Tensor) -> Tensor {
    norms.square().sum(tch::Kind::Float).sqrt()
}

/// √Σ‖tᵢ‖² over the given tensors (0 for none), as f64 (reads the device).
pub fn global_norm<'a>(ts: impl Iterator<Item = &'a Tensor>) -> f64 {
    let ts: Vec<&Tensor> = ts.collect();
    if ts.is_empty() {
        return 0.0;
    }
    norm_of_norms(&norms(&ts)).double_value(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn params() -> Vec<(String, Tensor)> {
        let o = (Kind::Float, Device::Cpu);
        vec![
            ("w".to_owned(), Tensor::ones([2, 3], o).set_requires_grad(true)),
            ("b".to_owned(), Tensor::ones([3], o).set_requires_grad(true)),
        ]
    }

    #[test]
    fn adamw_can_spare_norms_and_biases_from_decay() {
        for decay_1d in [true, false] {
            let ps = params();
            let cfg = OptimizerConfig::Adamw {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.5,
                decay_norms_and_biases: decay_1d,
            };
            let mut opt = Optimizer::new(
                cfg,
                ps.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(),
            );
            // Zero gradients: only weight decay moves a parameter.
            for (_, p) in &ps {
                p.sum(Kind::Float).multiply_scalar(0.0).backward();
            }
            opt.step(0.1);
            let w = ps[0].1.double_value(&[0, 0]);
            let b = ps[1].1.double_value(&[0]);
            assert!((w - 0.95).abs() < 1e-6, "matrices are always decayed: {w}");
            let want_b = if decay_1d { 0.95 } else { 1.0 };
            assert!((b - want_b).abs() < 1e-6, "decay_norms_and_biases {decay_1d}: {b}");
        }
    }

    #[test]
    fn clipping_scales_the_global_norm_and_reports_it_before() {
        let ps = params();
        let opt = Optimizer::new(
            OptimizerConfig::adamw_reference(),
            ps.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(),
        );
        // d/dp of sum(3p) = 3 everywhere: 9 elements → global norm 3·√9 = 9.
        for (_, p) in &ps {
            (p.sum(Kind::Float) * 3.0).backward();
        }
        let before = opt.clip_grad_norm(1.0).double_value(&[]);
        assert!((before - 9.0).abs() < 1e-5, "{before}");
        let after = global_norm(opt.grads().iter().map(|(_, g)| g));
        assert!((after - 1.0).abs() < 1e-5, "{after}");
        // Below the limit nothing changes.
        assert!((opt.clip_grad_norm(5.0).double_value(&[]) - after).abs() < 1e-6);
        assert!((global_norm(opt.grads().iter().map(|(_, g)| g)) - after).abs() < 1e-6);
    }
}
