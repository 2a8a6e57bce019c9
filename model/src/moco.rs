//! MoCo v3: base encoder (ViT + projector), predictor, momentum encoder, and the symmetrised
//! contrastive loss (Chen, Xie, He 2021; DESIGN.md "MoCo v3 (ViT) recipe").
//!
//! Variable names follow the reference module tree: `base_encoder.*` (the ViT with the projector
//! as its `head`), `predictor.*`, `momentum_encoder.*`; heads are `nn.Sequential`s, so the layers
//! of a 3-layer projector are `head.0` (Linear), `head.1` (BN), `head.3`, `head.4`, `head.6`,
//! `head.7` (BN without affine).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor, nn};

use crate::Error;
use crate::dist::Group;
use crate::vit::{Vit, VitConfig};

/// The method's hyper-parameters that shape the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MocoConfig {
    pub vit: VitConfig,
    /// Hidden width of projector and predictor (4096).
    pub mlp_dim: i64,
    /// Output width of projector and predictor (256).
    pub out_dim: i64,
    /// Softmax temperature τ (0.2 for ViTs).
    pub temperature: f64,
    /// Keep the patch projection at its random init (MoCo v3's stability trick).
    pub freeze_patch: bool,
}

impl MocoConfig {
    /// The reference heads around a given backbone.
    pub fn new(vit: VitConfig) -> Self {
        Self { vit, mlp_dim: 4096, out_dim: 256, temperature: 0.2, freeze_patch: true }
    }
}

/// BatchNorm1d's defaults, which moco-v3's heads use: running-statistics momentum and eps.
pub const BN_MOMENTUM: f64 = 0.1;
pub const BN_EPS: f64 = 1e-5;

/// One BatchNorm1d (PyTorch defaults: momentum [`BN_MOMENTUM`], eps [`BN_EPS`]).
#[derive(Debug)]
struct BatchNorm {
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    running_mean: Tensor,
    running_var: Tensor,
}

impl BatchNorm {
    fn new(p: &nn::Path<'_>, dim: i64, affine: bool) -> Self {
        let (weight, bias) = if affine {
            (Some(p.ones("weight", &[dim])), Some(p.zeros("bias", &[dim])))
        } else {
            (None, None)
        };
        Self {
            weight,
            bias,
            running_mean: p.zeros_no_train("running_mean", &[dim]),
            running_var: p.ones_no_train("running_var", &[dim]),
        }
    }

    fn forward(&self, x: &Tensor, train: bool, group: Option<&Group>) -> Result<Tensor, Error> {
        if let Some(g) = group.filter(|_| train) {
            return self.forward_sync(x, g);
        }
        Ok(x.batch_norm(
            self.weight.as_ref(),
            self.bias.as_ref(),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            BN_MOMENTUM,
            BN_EPS,
            true,
        ))
    }
}

impl BatchNorm {
    /// SyncBatchNorm's training forward: statistics over every rank's batch (moco-v3 converts
    /// every BN of the model), gathered as per-rank (mean, M2, n) and combined with Chan's
    /// formula in fp32; with a gradient through the gathered statistics when grad mode is on
    /// (the base encoder's heads), without under no_grad (the momentum encoder's). Running
    /// statistics: momentum 0.1, the unbiased global variance, as `nn.SyncBatchNorm`.
    // DEVIATION: Chan's (mean, M2, n) combination, not PyTorch's (mean, invstd, n) kernels; the
    // same statistics to rounding (docs/deviations.md #3).
    fn forward_sync(&self, x: &Tensor, g: &Group) -> Result<Tensor, Error> {
        let xf = x.to_kind(Kind::Float);
        let n = xf.size()[0];
        let c = xf.size()[1];
        let mean = xf.mean_dim(0, false, Kind::Float);
        let m2 = (&xf - &mean).square().sum_dim_intlist(0, false, Kind::Float);
        let count = Tensor::full([1], n as f64, (Kind::Float, xf.device()));
        let local =
            Tensor::cat(&[mean.view([1, c]), m2.view([1, c]), count.expand([1, c], true)], 0);
        let grad = xf.requires_grad();
        let all = g.all_gather(&local.view([1, 3, c]), grad)?;
        let (means, m2s, ns) = (all.select(1, 0), all.select(1, 1), all.select(1, 2));
        let total = ns.sum_dim_intlist(0, false, Kind::Float);
        let gmean = (&means * &ns).sum_dim_intlist(0, false, Kind::Float) / &total;
        let spread = (&ns * (&means - &gmean).square()).sum_dim_intlist(0, false, Kind::Float);
        let gm2 = m2s.sum_dim_intlist(0, false, Kind::Float) + spread;
        let var = &gm2 / &total;
        tch::no_grad(|| {
            let unbiased = &gm2 / (&total - 1.0).clamp_min(1.0);
            let mut rm = self.running_mean.shallow_clone();
            let mut rv = self.running_var.shallow_clone();
            let keep = 1.0 - BN_MOMENTUM;
            let _ = rm.g_mul_scalar_(keep).g_add_(&(gmean.detach() * BN_MOMENTUM));
            let _ = rv.g_mul_scalar_(keep).g_add_(&(unbiased.detach() * BN_MOMENTUM));
        });
        let mut y = (&xf - &gmean) / (var + BN_EPS).sqrt();
        if let (Some(w), Some(b)) = (&self.weight, &self.bias) {
            y = y * w + b;
        }
        Ok(y.to_kind(x.kind()))
    }
}

/// MoCo v3's `_build_mlp`: Linear (no bias) → BN → ReLU …, last Linear → BN without affine.
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<(Tensor, BatchNorm)>,
}

impl Mlp {
    fn new(p: &nn::Path<'_>, layers: i64, input: i64, hidden: i64, output: i64) -> Self {
        let layers = (0..layers)
            .map(|l| {
                let d1 = if l == 0 { input } else { hidden };
                let last = l == layers - 1;
                let d2 = if last { output } else { hidden };
                // PyTorch's Linear default: kaiming-uniform(a=√5), i.e. U(±1/√fan_in).
                let b = 1.0 / (d1 as f64).sqrt();
                let w = (p / (3 * l)).var("weight", &[d2, d1], nn::Init::Uniform { lo: -b, up: b });
                (w, BatchNorm::new(&(p / (3 * l + 1)), d2, !last))
            })
            .collect();
        Self { layers }
    }

    /// `train` uses batch statistics and updates the running ones, as `model.train()` does;
    /// with `group`, the statistics are every rank's (SyncBatchNorm).
    pub fn forward(&self, x: &Tensor, train: bool, group: Option<&Group>) -> Result<Tensor, Error> {
        let mut x = x.shallow_clone();
        let n = self.layers.len();
        for (i, (w, bn)) in self.layers.iter().enumerate() {
            x = bn.forward(&x.linear(w, None::<Tensor>), train, group)?;
            if i + 1 < n {
                x = x.relu();
            }
        }
        Ok(x)
    }
}

/// A ViT with the projector as its head.
#[derive(Debug)]
pub struct Encoder {
    pub vit: Vit,
    pub head: Mlp,
}

impl Encoder {
    fn new(p: &nn::Path<'_>, c: &MocoConfig) -> Self {
        Self {
            vit: Vit::new(p, c.vit, c.freeze_patch),
            head: Mlp::new(&(p / "head"), 3, c.vit.dim, c.mlp_dim, c.out_dim),
        }
    }
}

/// What one forward pass of the method gives.
#[derive(Debug)]
pub struct Output {
    /// ctr(q1, k2) + ctr(q2, k1), each cross-entropy × 2τ.
    pub loss: Tensor,
    pub q1: Tensor,
    pub q2: Tensor,
    pub k1: Tensor,
    pub k2: Tensor,
}

/// The whole method. `online` holds what the optimizer trains (`base_encoder.*`,
/// `predictor.*`); `momentum` holds `momentum_encoder.*`, never trained by gradients.
pub struct Moco {
    pub config: MocoConfig,
    pub online: nn::VarStore,
    pub momentum: nn::VarStore,
    pub base: Encoder,
    pub predictor: Mlp,
    pub momentum_encoder: Encoder,
    /// (base parameter, momentum parameter) pairs for the momentum update, in name order.
    pairs: Vec<(Tensor, Tensor)>,
    /// The data-parallel group: SyncBatchNorm statistics and all-gathered keys.
    group: Option<Arc<Group>>,
}

impl std::fmt::Debug for Moco {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moco").field("config", &self.config).finish_non_exhaustive()
    }
}

/// True for running statistics, which are buffers, not parameters.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

impl Moco {
    /// Builds the model with the reference init from torch's global RNG (seed it with
    /// `tch::manual_seed` first); the momentum encoder starts as a copy of the base encoder.
    pub fn new(config: MocoConfig, device: Device) -> Self {
        let online = nn::VarStore::new(device);
        let momentum = nn::VarStore::new(device);
        let base = Encoder::new(&(online.root() / "base_encoder"), &config);
        let predictor = Mlp::new(
            &(online.root() / "predictor"),
            2,
            config.out_dim,
            config.mlp_dim,
            config.out_dim,
        );
        let momentum_encoder = Encoder::new(&(momentum.root() / "momentum_encoder"), &config);
        let mut moco = Self {
            config,
            online,
            momentum,
            base,
            predictor,
            momentum_encoder,
            pairs: Vec::new(),
            group: None,
        };
        let on = moco.online.variables();
        let mo = moco.momentum.variables();
        let mut names: Vec<&String> = mo.keys().collect();
        names.sort();
        tch::no_grad(|| {
            for name in names {
                let src = &on[&name.replacen("momentum_encoder.", "base_encoder.", 1)];
                let mut dst = mo[name].shallow_clone();
                dst.copy_(src);
                let _ = dst.set_requires_grad(false);
                if !is_buffer(name) {
                    moco.pairs.push((src.shallow_clone(), dst));
                }
            }
        });
        moco
    }

    /// The momentum encoder's tensors the momentum update moves, by name: its parameters
    /// (its BatchNorm statistics are its own, as the reference's).
    pub fn momentum_updated(&self) -> Vec<String> {
        let mut v: Vec<String> =
            self.momentum.variables().into_keys().filter(|n| !is_buffer(n)).collect();
        v.sort();
        v
    }

    /// Trains data-parallel in `group`: every BatchNorm's statistics and the keys of the loss
    /// are the whole global batch's, as moco-v3 under DDP.
    pub fn distribute(&mut self, group: Arc<Group>) {
        self.group = Some(group);
    }

    /// `param_m = param_m · m + param_b · (1 − m)` over every parameter (not the BN buffers).
    // DEVIATION: one multi-tensor lerp, not mul + add per tensor (docs/deviations.md #11).
    pub fn update_momentum(&self, m: f64) {
        // mo·m + b·(1 − m) as one multi-tensor lerp: mo + (1 − m)(b − mo), the same value to
        // float rounding, one op for every tensor.
        let (b, mo): (Vec<&Tensor>, Vec<&Tensor>) =
            self.pairs.iter().map(|(b, mo)| (b, mo)).unzip();
        tch::no_grad(|| crate::shim::foreach_lerp_(&mo, &b, 1.0 - m))
            .expect("momentum pairs share a device and dtype");
    }

    /// The online parameters the optimizer updates, sorted by name (frozen ones excluded).
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> =
            self.online.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every variable of the model (online and momentum, parameters and buffers), by name.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> =
            self.online.variables().into_iter().chain(self.momentum.variables()).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Copies every named tensor of `named` into the model; every model variable must be there.
    pub fn load_named(
        &self,
        named: &std::collections::HashMap<String, Tensor>,
    ) -> Result<(), crate::error::Mismatch> {
        tch::no_grad(|| {
            for (name, t) in self.named_tensors() {
                let Some(src) = named.get(&name) else {
                    return Err(crate::error::Mismatch { tensor: name, message: "missing".into() });
                };
                if src.size() != t.size() {
                    let message = format!("shape {:?}, the model has {:?}", src.size(), t.size());
                    return Err(crate::error::Mismatch { tensor: name, message });
                }
                t.shallow_clone().copy_(src);
            }
            Ok(())
        })
    }

    /// The method's forward pass on two batches of normalised views `[B, 3, S, S]`: queries
    /// through base encoder and predictor (BN statistics per view), then — without gradients —
    /// the momentum update with `m` and the keys, then the symmetrised loss.
    pub fn forward(&self, x1: &Tensor, x2: &Tensor, m: f64) -> Output {
        self.try_forward(x1, x2, m).expect("one process runs no collective")
    }

    /// [`Moco::forward`]; in a data-parallel group its collectives can fail (a lost peer).
    pub fn try_forward(&self, x1: &Tensor, x2: &Tensor, m: f64) -> Result<Output, Error> {
        let b = x1.size()[0];
        // DEVIATION: one backbone pass over both views (the reference calls it per view); the
        // backbone has no batch coupling, and the heads see each view alone, as two calls of
        // the reference do (docs/deviations.md #2; BN without sync, one process: #3).
        let both = Tensor::cat(&[x1, x2], 0);
        let feats = self.base.vit.forward(&both);
        let g = self.group.as_deref();
        let head = |x: &Tensor| -> Result<Tensor, Error> {
            self.predictor.forward(&self.base.head.forward(x, true, g)?, true, g)
        };
        let q1 = head(&feats.narrow(0, 0, b))?;
        let q2 = head(&feats.narrow(0, b, b))?;
        let (k1, k2) = tch::no_grad(|| -> Result<(Tensor, Tensor), Error> {
            self.update_momentum(m);
            let f = self.momentum_encoder.vit.forward(&both);
            let k1 = self.momentum_encoder.head.forward(&f.narrow(0, 0, b), true, g)?;
            let k2 = self.momentum_encoder.head.forward(&f.narrow(0, b, b), true, g)?;
            Ok((k1, k2))
        })?;
        let t = self.config.temperature;
        let loss = contrastive_in(&q1, &k2, t, g)? + contrastive_in(&q2, &k1, t, g)?;
        Ok(Output { loss, q1, q2, k1, k2 })
    }

    /// Backbone features for evaluation: class token after the final norm, `[B, dim]`.
    pub fn features(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| self.base.vit.forward(x))
    }
}

/// One direction of the loss: L2-normalised q and k, logits q·kᵀ/τ, labels = row index,
/// cross-entropy × 2τ. (One process: the keys of this batch are all the keys.)
///
/// Always in fp32, autocast or not: normalisation, logits and cross-entropy of bf16 heads'
/// outputs in bf16 would round the logits to 8 bits of mantissa (at τ = 0.2, steps of ~0.03 in
/// a logit). The reference's fp16 autocast runs softmax/CE in fp32 too.
pub fn contrastive(q: &Tensor, k: &Tensor, t: f64) -> Tensor {
    contrastive_in(q, k, t, None).expect("one process runs no collective")
}

/// [`contrastive`] in a data-parallel group: the keys of every rank (gathered without
/// gradient, after normalisation, as moco-v3's `concat_all_gather`), labels offset by rank.
pub fn contrastive_in(
    q: &Tensor,
    k: &Tensor,
    t: f64,
    group: Option<&Group>,
) -> Result<Tensor, Error> {
    let _fp32 = crate::amp::Autocast::off(q.device());
    let q = l2_normalize(&q.to_kind(Kind::Float));
    let mut k = l2_normalize(&k.to_kind(Kind::Float));
    let n = q.size()[0];
    // DEVIATION: one process uses its own keys, which are all the keys (docs/deviations.md #4).
    let mut offset = 0;
    if let Some(g) = group {
        k = tch::no_grad(|| g.all_gather(&k.detach(), false))?;
        offset = n * g.rank as i64;
    }
    let logits = q.matmul(&k.tr()) / t;
    let labels = Tensor::arange_start(offset, offset + n, (Kind::Int64, logits.device()));
    Ok(logits.to_kind(Kind::Float).cross_entropy_loss(
        &labels,
        None::<Tensor>,
        Reduction::Mean,
        -100,
        0.0,
    ) * (2.0 * t))
}

/// `F.normalize(x, dim=1)`: x / max(‖x‖, 1e-12).
pub fn l2_normalize(x: &Tensor) -> Tensor {
    let n = x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
    x / n.expand_as(x)
}

/// ImageNet mean and std (torchvision's `Normalize` in the reference recipe).
pub const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const STD: [f64; 3] = [0.229, 0.224, 0.225];

/// `ToTensor` then `Normalize` for u8 HWC batches, with the constants resident on the device
/// (made once: no host-to-device copy per batch).
#[derive(Debug)]
pub struct Normalize {
    mean: Tensor,
    std: Tensor,
}

impl Normalize {
    pub fn new(device: Device) -> Self {
        let c = |v: &[f64; 3]| Tensor::from_slice(v).to_kind(Kind::Float).to_device(device);
        Self { mean: c(&MEAN), std: c(&STD) }
    }

    /// `(x / 255 − mean) / std` over the last (channel) dimension, in fp32.
    fn scale(&self, u8_hwc: &Tensor) -> Tensor {
        (u8_hwc.to_kind(Kind::Float) / 255.0 - &self.mean) / &self.std
    }

    /// Two-view u8 batch `[B, 2, S, S, 3]` → two normalised batches `[B, 3, S, S]` of `kind`.
    pub fn views(&self, u8_batch: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        let x = self.scale(u8_batch).permute([1, 0, 4, 2, 3]).to_kind(kind);
        (x.get(0).contiguous(), x.get(1).contiguous())
    }

    /// One-view u8 batch `[B, S, S, 3]` → normalised `[B, 3, S, S]` of `kind`.
    pub fn images(&self, u8_batch: &Tensor, kind: Kind) -> Tensor {
        self.scale(u8_batch).permute([0, 3, 1, 2]).to_kind(kind).contiguous()
    }
}

/// Two-view u8 batch `[B, 2, S, S, 3]` (HWC, on any device) → two normalised batches
/// `[B, 3, S, S]` of `kind`, as `ToTensor` then `Normalize` make them: (x / 255 − mean) / std.
pub fn normalize_views(u8_batch: &Tensor, kind: Kind) -> (Tensor, Tensor) {
    Normalize::new(u8_batch.device()).views(u8_batch, kind)
}

/// One-view u8 batch `[B, S, S, 3]` → normalised `[B, 3, S, S]` of `kind`.
pub fn normalize_images(u8_batch: &Tensor, kind: Kind) -> Tensor {
    Normalize::new(u8_batch.device()).images(u8_batch, kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amp::Autocast;

    #[test]
    fn the_loss_is_fp32_under_bf16_autocast() {
        let _rng = crate::torch_rng();
        tch::manual_seed(1);
        let q = Tensor::randn([16, 32], (Kind::Float, Device::Cpu));
        let k = Tensor::randn([16, 32], (Kind::Float, Device::Cpu));
        for (q, k) in [
            (q.shallow_clone(), k.shallow_clone()),
            (q.to_kind(Kind::BFloat16), k.to_kind(Kind::BFloat16)),
        ] {
            let want = contrastive(&q.to_kind(Kind::Float), &k.to_kind(Kind::Float), 0.2);
            let got = {
                let _amp = Autocast::new(Device::Cpu, Kind::BFloat16);
                let l = contrastive(&q, &k, 0.2);
                assert!(Autocast::is_enabled(Device::Cpu), "the outer autocast comes back");
                l
            };
            assert_eq!(got.kind(), Kind::Float);
            assert_eq!(got.double_value(&[]), want.double_value(&[]), "inputs {:?}", q.kind());
        }
    }

    /// A BatchNorm with non-trivial affine parameters, on its own VarStore.
    fn bn(vs: &nn::VarStore) -> BatchNorm {
        let b = BatchNorm::new(&vs.root(), 6, true);
        tch::no_grad(|| {
            let w = Tensor::from_slice(&[0.5f32, 1.0, 1.5, 2.0, -1.0, 0.25]);
            b.weight.as_ref().unwrap().shallow_clone().copy_(&w);
            b.bias.as_ref().unwrap().shallow_clone().copy_(&(&w * 0.1));
        });
        b
    }

    /// Rows of x and of the output weights: 12 × 6, deterministic.
    fn data(scale: f64) -> (Tensor, Tensor) {
        let v: Vec<f32> =
            (0..72).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.3 + (i % 6) as f32).collect();
        let x = Tensor::from_slice(&v).view([12, 6]) * scale;
        let w: Vec<f32> = (0..72).map(|i| ((i * 13 % 17) as f32 - 8.0) * 0.1).collect();
        (x, Tensor::from_slice(&w).view([12, 6]))
    }

    #[test]
    fn sync_batchnorm_over_ranks_is_one_batchnorm_over_the_whole_batch() {
        let vs = nn::VarStore::new(Device::Cpu);
        let single = bn(&vs);
        let (x, w) = data(1.0);
        let x = x.set_requires_grad(true);
        let y = single.forward(&x, true, None).unwrap();
        (&y * &w).sum(Kind::Float).backward();
        let v = |t: &Tensor| Vec::<f32>::try_from(t.reshape([-1])).unwrap();
        let want = (
            v(&y),
            v(&x.grad()),
            v(&single.weight.as_ref().unwrap().grad()),
            v(&single.running_mean),
            v(&single.running_var),
        );
        for world in [2usize, 3] {
            let per = 12 / world as i64;
            let got = crate::dist::tests::on_ranks(world, move |g| {
                let vs = nn::VarStore::new(Device::Cpu);
                let b = bn(&vs);
                let (x, w) = data(1.0);
                let rows = |t: &Tensor| t.narrow(0, per * g.rank as i64, per);
                let x = rows(&x).detach().set_requires_grad(true);
                let y = b.forward(&x, true, Some(&g)).unwrap();
                (&y * rows(&w)).sum(Kind::Float).backward();
                let v = |t: &Tensor| Vec::<f32>::try_from(t.reshape([-1])).unwrap();
                (
                    v(&y),
                    v(&x.grad()),
                    v(&b.weight.as_ref().unwrap().grad()),
                    v(&b.running_mean),
                    v(&b.running_var),
                )
            });
            let close = |a: &[f32], b: &[f32], what: &str| {
                for (i, (p, q)) in a.iter().zip(b).enumerate() {
                    assert!(
                        (p - q).abs() <= 1e-5 * q.abs().max(1.0),
                        "{world} ranks: {what}[{i}]: {p} vs {q}"
                    );
                }
            };
            let mut weight_grad = vec![0f32; 6];
            for (rank, (y, gx, gw, rm, rv)) in got.iter().enumerate() {
                let r = rank * per as usize * 6..(rank + 1) * per as usize * 6;
                close(y, &want.0[r.clone()], "output");
                close(gx, &want.1[r], "input gradient");
                close(rm, &want.3, "running mean");
                close(rv, &want.4, "running var (unbiased, global)");
                for (a, b) in weight_grad.iter_mut().zip(gw) {
                    *a += b;
                }
            }
            close(&weight_grad, &want.2, "weight gradient summed over ranks");
        }
    }
}
