//! Linear probe on frozen, cached features, two protocols ([`ProbeProtocol`]):
//!
//! - `mocov3` (default), moco-v3's `main_lincls.py`: a plain linear layer on the features
//!   (weight N(0, 0.01), zero bias), SGD momentum 0.9, no weight decay, lr = base_lr × batch /
//!   256 on a cosine stepped **per epoch**;
//! - `bn-linear`: MAE's probe head (BatchNorm without affine, eps 1e-6, then the linear layer),
//!   with the same SGD on a cosine stepped per iteration (MAE itself uses LARS with warmup).
//!
//! Features are computed once by the caller (one centre view per image), so the classifier
//! trains in seconds; the references instead re-augment images every epoch.

use tch::{Device, Kind, Tensor};

use crate::knn::{KnnResult, Labeled};

/// Which probe: see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeProtocol {
    /// moco-v3 `main_lincls.py`: linear layer, cosine per epoch.
    MocoV3,
    /// MAE's head (BatchNorm without affine + linear), cosine per iteration.
    BatchNormLinear,
}

impl ProbeProtocol {
    /// The name the command line and the JSON use.
    pub fn name(self) -> &'static str {
        match self {
            Self::MocoV3 => "mocov3",
            Self::BatchNormLinear => "bn-linear",
        }
    }
}

impl std::str::FromStr for ProbeProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mocov3" => Ok(Self::MocoV3),
            "bn-linear" => Ok(Self::BatchNormLinear),
            _ => Err(format!("{s:?}: expected mocov3 or bn-linear")),
        }
    }
}

/// Probe hyper-parameters. lr = base_lr × batch / 256.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeConfig {
    pub protocol: ProbeProtocol,
    pub epochs: usize,
    pub batch: i64,
    pub base_lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub seed: i64,
}

impl Default for ProbeConfig {
    /// MoCo v3's ViT linear probe: SGD, momentum 0.9, no weight decay, base lr 3 (at batch
    /// 1024 → 12), 90 epochs.
    fn default() -> Self {
        Self {
            protocol: ProbeProtocol::MocoV3,
            epochs: 90,
            batch: 1024,
            base_lr: 3.0,
            momentum: 0.9,
            weight_decay: 0.0,
            seed: 0,
        }
    }
}

impl ProbeConfig {
    /// The learning rate at `epoch` (0-based) and iteration `step` of `total`: half cosine from
    /// `lr0` to 0, per epoch (`mocov3`, as `main_lincls.py`'s `adjust_learning_rate`) or per
    /// iteration (`bn-linear`).
    pub fn lr(&self, lr0: f64, epoch: usize, step: f64, total: f64) -> f64 {
        let progress = match self.protocol {
            ProbeProtocol::MocoV3 => epoch as f64 / self.epochs.max(1) as f64,
            ProbeProtocol::BatchNormLinear => step / total,
        };
        lr0 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// Top-1/top-5 on `val` of a linear classifier trained on `train` (`KnnResult` with k = 0).
// DEVIATION: on features cached once from centre views, not re-augmented per epoch
// (docs/deviations.md #5).
pub fn linear_probe(
    train: Labeled<'_>,
    val: Labeled<'_>,
    classes: i64,
    cfg: ProbeConfig,
) -> KnnResult {
    let dev = Device::Cpu;
    let x = train.features.to_kind(Kind::Float).to_device(dev);
    let y = train.labels.to_device(dev);
    let (n, dim) = x.size2().expect("[N, dim] features");
    tch::manual_seed(cfg.seed);
    let mut w = (Tensor::randn([classes, dim], (Kind::Float, dev)) * 0.01).set_requires_grad(true);
    let mut b = Tensor::zeros([classes], (Kind::Float, dev)).set_requires_grad(true);
    let mut bufs = [w.zeros_like(), b.zeros_like()];
    let running_mean = Tensor::zeros([dim], (Kind::Float, dev));
    let running_var = Tensor::ones([dim], (Kind::Float, dev));
    let bn = |x: &Tensor, train: bool| {
        if cfg.protocol == ProbeProtocol::MocoV3 {
            return x.shallow_clone();
        }
        x.batch_norm(
            None::<&Tensor>,
            None::<&Tensor>,
            Some(&running_mean),
            Some(&running_var),
            train,
            0.1,
            1e-6,
            false,
        )
    };
    let batch = cfg.batch.min(n).max(2);
    let steps_per_epoch = (n / batch).max(1);
    let total = (steps_per_epoch * cfg.epochs as i64).max(1) as f64;
    let lr0 = cfg.base_lr * batch as f64 / 256.0;
    let mut step = 0.0;
    for epoch in 0..cfg.epochs {
        let perm = Tensor::randperm(n, (Kind::Int64, dev));
        for s in 0..steps_per_epoch {
            let idx = perm.narrow(0, s * batch, batch);
            let logits = bn(&x.index_select(0, &idx), true).linear(&w, Some(&b));
            let loss = logits.cross_entropy_for_logits(&y.index_select(0, &idx));
            w.zero_grad();
            b.zero_grad();
            loss.backward();
            let lr = cfg.lr(lr0, epoch, step, total);
            tch::no_grad(|| {
                for (p, buf) in [&mut w, &mut b].into_iter().zip(bufs.iter_mut()) {
                    let g = p.grad() + &*p * cfg.weight_decay;
                    let _ = buf.g_mul_scalar_(cfg.momentum);
                    let _ = buf.g_add_(&g);
                    let _ = p.g_add_(&(&*buf * (-lr)));
                }
            });
            step += 1.0;
        }
    }
    tch::no_grad(|| {
        let logits =
            bn(&val.features.to_kind(Kind::Float).to_device(dev), false).linear(&w, Some(&b));
        let m = logits.size()[0];
        let top = logits.topk(5.min(classes), 1, true, true).1;
        let hits = top.eq_tensor(&val.labels.to_device(dev).view([m, 1]));
        let c1 = hits.narrow(1, 0, 1).sum(Kind::Int64).int64_value(&[]);
        let c5 = hits.sum(Kind::Int64).int64_value(&[]);
        let pct = |c: i64| if m == 0 { 0.0 } else { 100.0 * c as f64 / m as f64 };
        KnnResult { top1: pct(c1), top5: pct(c5), k: 0, n: m }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_linearly_separable_classes_and_not_noise() {
        let _rng = crate::torch_rng();
        tch::manual_seed(1);
        let o = (Kind::Float, Device::Cpu);
        let dirs = Tensor::randn([5, 32], o);
        let make = |per: i64| {
            let labels = Tensor::arange(5, (Kind::Int64, Device::Cpu))
                .repeat_interleave_self_int(per, 0, None);
            // Classes differ along a direction; a large shared offset and noise on top.
            let x = dirs.index_select(0, &labels) * 2.0 + Tensor::randn([5 * per, 32], o) + 10.0;
            (x, labels)
        };
        let (tr, trl) = make(80);
        let (te, tel) = make(30);
        for protocol in [ProbeProtocol::MocoV3, ProbeProtocol::BatchNormLinear] {
            let base_lr = if protocol == ProbeProtocol::MocoV3 { 0.05 } else { 0.5 };
            let cfg =
                ProbeConfig { protocol, epochs: 30, batch: 64, base_lr, ..ProbeConfig::default() };
            let r = linear_probe(
                Labeled { features: &tr, labels: &trl },
                Labeled { features: &te, labels: &tel },
                5,
                cfg,
            );
            assert!(r.top1 > 90.0, "{r:?}");
            assert_eq!(r.n, 150);
            let noise = Tensor::randn([400, 32], o);
            let r = linear_probe(
                Labeled { features: &noise, labels: &trl },
                Labeled { features: &te, labels: &tel },
                5,
                cfg,
            );
            assert!(r.top1 < 50.0, "features unrelated to the labels cannot be probed: {r:?}");
        }
    }

    #[test]
    fn mocov3_is_the_default_and_steps_its_cosine_per_epoch() {
        let _rng = crate::torch_rng();
        let c = ProbeConfig { epochs: 4, ..ProbeConfig::default() };
        assert_eq!(c.protocol, ProbeProtocol::MocoV3);
        // main_lincls.py: lr = lr0 · ½(1 + cos(π · epoch / epochs)), constant within an epoch.
        let total = 40.0;
        assert_eq!(c.lr(1.0, 0, 0.0, total), 1.0);
        assert_eq!(c.lr(1.0, 0, 9.0, total), 1.0);
        assert!((c.lr(1.0, 2, 25.0, total) - 0.5).abs() < 1e-12);
        let b = ProbeConfig { protocol: ProbeProtocol::BatchNormLinear, ..c };
        assert!(b.lr(1.0, 0, 9.0, total) < 1.0, "bn-linear: per iteration");
        assert_eq!("bn-linear".parse::<ProbeProtocol>(), Ok(ProbeProtocol::BatchNormLinear));
        assert!("mae".parse::<ProbeProtocol>().is_err());
    }
}
