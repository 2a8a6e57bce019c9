//! Optimizers written over tensors, with state that can be saved and restored (tch's own
//! optimizers cannot export theirs, and a resumable trainer needs it).
//!
//! Both follow PyTorch's single-tensor code paths op for op, so one step matches
//! `torch.optim.AdamW` and MoCo v3's LARS to float rounding.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

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
            .collect();
        Self { config, slots, steps: 0 }
    }

    pub fn config(&self) -> OptimizerConfig {
        self.config
    }

    /// Zeroes every parameter's gradient (drops it, as `zero_grad(set_to_none=True)`).
    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            let g = s.param.grad();
            if g.defined() {
                let _ = g.detach().zero_();
            }
        }
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
        self.steps += 1;
        let t = self.steps as f64;
        tch::no_grad(|| {
            for s in &mut self.slots {
                let grad = s.param.grad();
                if !grad.defined() {
                    continue;
                }
                match self.config {
                    OptimizerConfig::Adamw {
                        beta1,
                        beta2,
                        eps,
                        weight_decay,
                        decay_norms_and_biases,
                    } => {
                        let decay = if decay_norms_and_biases || s.param.dim() > 1 {
                            weight_decay
                        } else {
                            0.0
                        };
                        let _ = s.param.g_mul_scalar_(1.0 - lr * decay);
                        let _ = s.a.lerp_(&grad, 1.0 - beta1);
                        let v = s.b.as_mut().expect("AdamW has a second moment");
                        let _ = v.g_mul_scalar_(beta2);
                        // v + (1 − β₂)·g·g, rounded as PyTorch's addcmul_((g, g), value): the
                        // scaled factor first, then the product. One temporary.
                        let _ = v.addcmul_(&grad, &(&grad * (1.0 - beta2)));
                        let bc1 = 1.0 - beta1.powf(t);
                        let bc2 = 1.0 - beta2.powf(t);
                        let step_size = lr / bc1;
                        let mut denom = v.sqrt();
                        let _ = denom.g_div_scalar_(bc2.sqrt());
                        let _ = denom.g_add_scalar_(eps);
                        // p + (−step·m) / denom, as addcdiv_(m, denom, value=−step) rounds it.
                        let _ = s.param.addcdiv_(&(&s.a * (-step_size)), &denom);
                    }
                    OptimizerConfig::Lars { momentum, trust_coefficient, weight_decay } => {
                        let mut dp = grad.shallow_clone();
                        if s.param.dim() > 1 {
                            dp = &dp + &s.param * weight_decay;
                            let pn = s.param.norm();
                            let un = dp.norm();
                            let one = pn.ones_like();
                            // where(pn > 0, where(un > 0, tc·pn/un, 1), 1)
                            let inner =
                                (&pn * trust_coefficient / &un).where_self(&un.gt(0.0), &one);
                            let q = inner.where_self(&pn.gt(0.0), &one);
                            dp *= q;
                        }
                        let _ = s.a.g_mul_scalar_(momentum);
                        let _ = s.a.g_add_(&dp);
                        let _ = s.param.g_add_(&(&s.a * (-lr)));
                    }
                }
            }
        });
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
    /// (`clip_grad_norm_`), and returns the norm before clipping.
    pub fn clip_grad_norm(&self, max_norm: f64) -> f64 {
        let norm = global_norm(self.grads().iter().map(|(_, g)| g));
        if norm > max_norm && norm.is_finite() {
            let coef = max_norm / (norm + 1e-6);
            tch::no_grad(|| {
                for (_, g) in self.grads() {
                    let _ = g.detach().g_mul_scalar_(coef);
                }
            });
        }
        norm
    }
}

/// √Σ‖tᵢ‖² over the given tensors (0 for none), as f64.
pub fn global_norm<'a>(ts: impl Iterator<Item = &'a Tensor>) -> f64 {
    let norms: Vec<Tensor> =
        ts.map(|t| t.detach().to_kind(tch::Kind::Float).norm().square()).collect();
    if norms.is_empty() {
        return 0.0;
    }
    Tensor::stack(&norms, 0).sum(tch::Kind::Float).sqrt().double_value(&[])
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
        let before = opt.clip_grad_norm(1.0);
        assert!((before - 9.0).abs() < 1e-5, "{before}");
        let after = global_norm(opt.grads().iter().map(|(_, g)| g));
        assert!((after - 1.0).abs() < 1e-5, "{after}");
        // Below the limit nothing changes.
        assert!((opt.clip_grad_norm(5.0) - after).abs() < 1e-6);
        assert!((global_norm(opt.grads().iter().map(|(_, g)| g)) - after).abs() < 1e-6);
    }
}
