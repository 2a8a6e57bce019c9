//! The training configuration, its resolved plan, and one MoCo v3 step (schedules, forward,
//! backward, gradient norms, optional clipping, optimizer), with the state a checkpoint needs.

use std::collections::HashMap;
use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use crate::Error;
use crate::amp::Autocast;
use crate::checkpoint::Loaded;
pub use crate::config::{ALIASES, LARS_DEFAULTS, Layers, Origin, Plan, TrainConfig};
use crate::dist::Group;
use crate::moco::{Moco, Normalize};
use crate::optim::{Optimizer, norm_of_norms, norms};

/// What one step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Steps taken after this one (1-based step number).
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub momentum: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Gradient norm of the first trained layer (patch projection, or block 0 when frozen).
    pub grad_norm_first: f64,
}

/// The loss (or the gradient norm) of step `step + 1` was NaN or infinite: nothing of it, nor
/// of any step queued after it, was applied. `good` are the steps before it that had not been
/// read yet.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFinite {
    pub step: u64,
    pub loss: f64,
    pub good: Vec<StepStats>,
}

/// Why [`Trainer::drain`] gives no numbers.
#[derive(Debug)]
pub enum StepError {
    /// A step was not finite; the model is back at the step before it.
    NonFinite(NonFinite),
    /// A collective failed (a lost peer, a timeout).
    Failed(Error),
}

/// Tensors of one dtype made views of one flat buffer, with a copy of it: the state a step
/// changes before its loss is known, kept restorable without a per-tensor loop.
#[derive(Debug)]
struct Flat {
    live: Tensor,
    copy: Tensor,
}

impl Flat {
    /// Makes `ts` (all of one dtype and device) views of one new contiguous buffer.
    fn adopt(ts: &mut [Tensor]) -> Self {
        let kind = ts[0].kind();
        let device = ts[0].device();
        let total: i64 = ts.iter().map(Tensor::numel).sum::<usize>() as i64;
        let live = Tensor::zeros([total], (kind, device));
        let mut off = 0i64;
        tch::no_grad(|| {
            for t in ts.iter_mut() {
                let n = t.numel() as i64;
                let view = live.narrow(0, off, n).view(t.size().as_slice());
                view.shallow_clone().copy_(t);
                t.set_data(&view);
                off += n;
            }
        });
        let copy = live.copy();
        Self { live, copy }
    }
}

/// A step enqueued on the device whose numbers have not been read.
#[derive(Debug)]
struct Pending {
    step: u64,
    lr: f64,
    momentum: f64,
    /// `[loss, grad_norm, grad_norm_first]`, fp32 on the device.
    values: Tensor,
}

/// Model, optimizer and step counter.
#[derive(Debug)]
pub struct Trainer {
    pub plan: Plan,
    pub moco: Moco,
    pub opt: Optimizer,
    /// Steps taken so far (enqueued on the device; [`Trainer::drain`] says whether they held).
    pub step: u64,
    pub device: Device,
    first_layer: Vec<String>,
    normalize: Normalize,
    /// Everything the forward pass changes before the loss is known -- the momentum encoder
    /// (its update comes before the keys, as in the reference) and every BatchNorm's running
    /// statistics -- as flat buffers per dtype, each with a copy refreshed on the device at the
    /// start of every step while no step has gone non-finite.
    guard: Vec<Flat>,
    /// 1 once any step's loss or gradient norm was not finite (sticky), else 0: a one-element
    /// fp32 tensor on the device that masks the optimizer and freezes the guard's copies.
    found_inf: Tensor,
    pending: Vec<Pending>,
    /// The data-parallel group, and 1 / world on the device (the gradient average's factor,
    /// made once rather than copied to the device every step).
    group: Option<(Arc<Group>, Tensor)>,
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
        let mut by_kind: Vec<(Kind, Vec<Tensor>)> = Vec::new();
        for (n, t) in moco.named_tensors() {
            if trainable.contains(&n) {
                continue;
            }
            match by_kind.iter_mut().find(|(k, _)| *k == t.kind()) {
                Some((_, v)) => v.push(t),
                None => by_kind.push((t.kind(), vec![t])),
            }
        }
        let guard = by_kind.into_iter().map(|(_, mut ts)| Flat::adopt(&mut ts)).collect();
        let opt = Optimizer::new(plan.optimizer, params);
        Self {
            plan,
            moco,
            opt,
            step: 0,
            device,
            first_layer,
            normalize: Normalize::new(device),
            guard,
            found_inf: Tensor::zeros([1], (Kind::Float, device)),
            pending: Vec::new(),
            group: None,
        }
    }

    /// Trains data-parallel in `group`: rank 0's weights (and everything else a checkpoint
    /// holds) are broadcast to every rank and verified equal; from now on gradients are
    /// averaged over ranks after backward, BatchNorm statistics and keys are global, and the
    /// logged loss is the mean over ranks.
    pub fn distribute(&mut self, group: Arc<Group>) -> Result<(), Error> {
        let state = self.state_tensors();
        let by_kind = |k: Kind| state.iter().filter(move |(_, t)| t.kind() == k).map(|(_, t)| t);
        for kind in [Kind::Float, Kind::Int64, Kind::BFloat16, Kind::Double] {
            group.broadcast_(&by_kind(kind).collect::<Vec<_>>(), 0)?;
        }
        self.moco.distribute(group.clone());
        let inv = Tensor::from_slice(&[1.0f32 / group.world as f32]).to_device(self.device);
        self.group = Some((group, inv));
        self.check_same_weights("start")
    }

    /// Refuses to go on when the ranks' weights differ (a checksum of every state tensor).
    pub fn check_same_weights(&self, when: &str) -> Result<(), Error> {
        let Some(g) = self.group() else { return Ok(()) };
        let sum = tch::no_grad(|| {
            let parts: Vec<Tensor> = self
                .state_tensors()
                .iter()
                .enumerate()
                .map(|(i, (_, t))| t.to_kind(Kind::Double).sum(Kind::Double) * (i + 1) as f64)
                .collect();
            Tensor::stack(&parts, 0).sum(Kind::Double).view([1]).to_device(Device::Cpu)
        });
        let all: Vec<f64> = Vec::try_from(g.all_gather(&sum, false)?).expect("f64 sums");
        if all.iter().any(|s| s.to_bits() != all[0].to_bits()) {
            return Err(Error::Dist(format!(
                "at {when}: the ranks' weights differ (checksums {all:?}); stopping before they \
                 train different models"
            )));
        }
        Ok(())
    }

    /// The data-parallel group, when there is one.
    pub fn group(&self) -> Option<&Group> {
        self.group.as_ref().map(|(g, _)| &**g)
    }

    /// Which parameters the first-layer gradient norm covers.
    pub fn first_layer_names(&self) -> &[String] {
        &self.first_layer
    }

    /// Float views from a `[B, 2, S, S, 3]` u8 batch already on the device.
    pub fn views(&self, u8_batch: &Tensor) -> (Tensor, Tensor) {
        self.normalize.views(u8_batch, Kind::Float)
    }

    /// Enqueues one training step on a u8 two-view batch on the device, and returns without
    /// waiting for it: no value is read back. A step whose loss or gradient norm is not finite
    /// applies nothing (the optimizer is masked on the device, the momentum encoder and the
    /// BatchNorm statistics are restored from the guard), nor does any step after it;
    /// [`Trainer::drain`] reports it.
    pub fn step(&mut self, u8_batch: &Tensor) -> Result<(), Error> {
        let lr = self.plan.schedule.lr(self.step);
        let m = self.plan.schedule.momentum(self.step);
        let (mut x1, x2) = self.views(u8_batch);
        if self.plan.config.debug_nan_at_step == self.step + 1 {
            x1 *= f64::NAN;
        }
        let healthy = self.found_inf.lt(0.5);
        tch::no_grad(|| {
            for f in &self.guard {
                f.copy.shallow_clone().copy_(&f.live.where_self(&healthy, &f.copy));
            }
        });
        self.opt.zero_grad();
        let out = {
            // DEVIATION: bf16 autocast without a GradScaler (moco-v3: fp16 + GradScaler);
            // docs/deviations.md #1.
            let _amp = self.plan.autocast.then(|| Autocast::new(self.device, Kind::BFloat16));
            self.moco.try_forward(&x1, &x2, m)?
        };
        // Data-parallel, backward runs collectives too (SyncBatchNorm's gather): a lost peer
        // must be an error there, not a panic.
        out.loss.f_backward().map_err(|e| match &self.group {
            Some(_) => Error::Dist(format!(
                "backward: {e} -- a peer process is gone (killed, crashed or unreachable) or \
                 timed out; the last checkpoint is intact: relaunch every rank with --resume"
            )),
            None => Error::Libtorch { op: "backward", message: e.to_string() },
        })?;
        if let Some((g, inv)) = &self.group {
            // DDP's average: every rank applies the same update.
            // DEVIATION: one coalesced all-reduce after backward, not buckets overlapped with
            // it (docs/deviations.md #10).
            let grads: Vec<Tensor> = self.opt.grads().into_iter().map(|(_, g)| g).collect();
            let refs: Vec<&Tensor> = grads.iter().collect();
            g.all_reduce_sum_(&refs)?;
            crate::shim::foreach_mul_(&refs, inv).expect("average gradients");
        }
        let values = self.apply(&out.loss, lr);
        self.step += 1;
        self.pending.push(Pending { step: self.step, lr, momentum: m, values });
        Ok(())
    }

    /// After backward: the gradient norms (and clipping), the non-finite flag, and the masked
    /// optimizer step -- multi-tensor ops, a fixed number whatever the model's depth. Returns
    /// `[loss, grad_norm, grad_norm_first]` on the device.
    fn apply(&mut self, loss: &Tensor, lr: f64) -> Tensor {
        let grads = self.opt.grads();
        let refs: Vec<&Tensor> = grads.iter().map(|(_, g)| g).collect();
        let first: Vec<&Tensor> = grads
            .iter()
            .filter(|(n, _)| self.first_layer.iter().any(|f| f == n))
            .map(|(_, g)| g)
            .collect();
        let first = norm_of_norms(&norms(&first));
        let grad_norm = if self.plan.config.grad_clip > 0.0 {
            self.opt.clip_grad_norm(self.plan.config.grad_clip)
        } else {
            norm_of_norms(&norms(&refs))
        };
        let values = Tensor::stack(&[loss.detach().to_kind(Kind::Float), grad_norm, first], 0);
        // DEVIATION: the reference trains on; we stop and undo the step (deviations #7).
        let bad = values.narrow(0, 0, 2).isfinite().all().logical_not().to_kind(Kind::Float);
        tch::no_grad(|| self.found_inf.copy_(&self.found_inf.maximum(&bad.view([1]))));
        self.opt.step_masked(lr, Some(&self.found_inf));
        values
    }

    /// Steps enqueued and not yet read.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Reads the numbers of the steps enqueued since the last drain (one host sync). If one of
    /// them was not finite, the model is put back to the state before it -- online weights,
    /// optimizer state, momentum encoder, BatchNorm statistics, step counters -- and that step
    /// is reported with the good ones before it.
    pub fn drain(&mut self) -> Result<Vec<StepStats>, StepError> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let pending = std::mem::take(&mut self.pending);
        let mut all = Tensor::stack(&pending.iter().map(|p| &p.values).collect::<Vec<_>>(), 0);
        if let Some(g) = self.group() {
            // The logged loss is the mean over ranks (the gradient norms are already global).
            let loss = all.select(1, 0).contiguous();
            g.all_reduce_sum_(&[&loss]).map_err(StepError::Failed)?;
            all = Tensor::cat(&[(loss / g.world as f64).view([-1, 1]), all.narrow(1, 1, 2)], 1);
        }
        let host: Vec<f32> =
            Vec::try_from(all.to_device(Device::Cpu).view([-1])).expect("fp32 values");
        let mut good = Vec::with_capacity(pending.len());
        for (p, v) in pending.iter().zip(host.chunks(3)) {
            let (loss, grad_norm) = (v[0] as f64, v[1] as f64);
            if !loss.is_finite() || !grad_norm.is_finite() {
                let before = p.step - 1;
                self.rewind(before);
                return Err(StepError::NonFinite(NonFinite {
                    step: before,
                    loss: if loss.is_finite() { grad_norm } else { loss },
                    good,
                }));
            }
            good.push(StepStats {
                step: p.step,
                loss,
                lr: p.lr,
                momentum: p.momentum,
                grad_norm,
                grad_norm_first: v[2] as f64,
            });
        }
        Ok(good)
    }

    /// Back to the state after `step` steps, the first non-finite step being `step + 1`: the
    /// guard's copies were frozen at its start and the optimizer skipped it and every step
    /// after.
    fn rewind(&mut self, step: u64) {
        tch::no_grad(|| {
            for f in &self.guard {
                f.live.shallow_clone().copy_(&f.copy);
            }
            let _ = self.found_inf.zero_();
        });
        self.step = step;
        self.opt.steps = step as i64;
    }

    /// One step and its numbers ([`Trainer::step`] then [`Trainer::drain`]): a host sync per
    /// step, for tests and benchmarks.
    pub fn train_step(&mut self, u8_batch: &Tensor) -> Result<StepStats, NonFinite> {
        let failed = |e: Error| -> NonFinite { panic!("a step failed: {e}") };
        self.step(u8_batch).map_err(failed)?;
        match self.drain() {
            Ok(mut v) => Ok(v.pop().expect("one step")),
            Err(StepError::NonFinite(nf)) => Err(nf),
            Err(StepError::Failed(e)) => Err(failed(e)),
        }
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
        let _rng = crate::torch_rng();
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

    fn tiny_trainer(depth: i64, nan_at: u64) -> Trainer {
        let cfg =
            TrainConfig { depth: Some(depth), debug_nan_at_step: nan_at, ..crate::config::tiny() };
        Trainer::new(cfg.plan(16, Device::Cpu).unwrap(), Device::Cpu)
    }

    /// A batch that depends on `seed` only (not on torch's global RNG, which tests running
    /// in parallel share).
    fn batch(seed: i64) -> Tensor {
        let n = 4 * 2 * 16 * 16 * 3;
        let v: Vec<u8> = (0..n).map(|i| ((i * (2 * seed + 1) + seed) % 251) as u8).collect();
        Tensor::from_slice(&v).view([4, 2, 16, 16, 3])
    }

    #[test]
    fn a_step_reads_nothing_back_and_its_update_is_a_fixed_number_of_ops() {
        let _rng = crate::torch_rng();
        let mut counts = Vec::new();
        for depth in [1, 4] {
            let mut t = tiny_trainer(depth, 0);
            let x = batch(1);
            t.step(&x).unwrap();
            let (r, whole) = crate::shim::count_ops(|| t.step(&x)).unwrap();
            r.unwrap();
            assert_eq!(whole.host_reads, 0, "depth {depth}: a step waits for nothing: {whole:?}");
            // The part after backward (norms, clipping, flag, optimizer) and the momentum update.
            let (x1, x2) = t.views(&x);
            t.opt.zero_grad();
            let out = t.moco.forward(&x1, &x2, 0.99);
            out.loss.backward();
            let (_, apply) = crate::shim::count_ops(|| t.apply(&out.loss, 1e-4)).unwrap();
            let ((), momentum) = crate::shim::count_ops(|| t.moco.update_momentum(0.99)).unwrap();
            assert_eq!(apply.host_reads + momentum.host_reads, 0);
            counts.push((apply.ops, momentum.ops, t.opt.grads().len()));
        }
        let (a1, m1, n1) = counts[0];
        let (a4, m4, n4) = counts[1];
        assert!(n4 > n1 + 20, "the deeper model has more tensors: {n1} vs {n4}");
        assert_eq!((a1, m1), (a4, m4), "ops do not grow with the number of tensors");
        eprintln!("after backward: {a1} ops, momentum update: {m1} ({n1} and {n4} tensors)");
        assert!(a1 + m1 <= 60, "optimizer + momentum + norms: {} ops", a1 + m1);
    }

    #[test]
    fn a_non_finite_step_found_later_undoes_itself_and_every_step_after() {
        let _rng = crate::torch_rng();
        let mut t = tiny_trainer(1, 3);
        let mut reference = tiny_trainer(1, 0);
        // The same start whatever other tests do with torch's global RNG meanwhile.
        let init: HashMap<String, Tensor> =
            t.moco.named_tensors().into_iter().map(|(n, x)| (n, x.detach().copy())).collect();
        reference.moco.load_named(&init).unwrap();
        for s in 1..=5 {
            t.step(&batch(s)).unwrap();
        }
        assert_eq!(t.pending(), 5);
        let StepError::NonFinite(nf) = t.drain().unwrap_err() else { panic!("not a NaN stop") };
        assert_eq!((nf.step, nf.good.len(), t.step, t.opt.steps), (2, 2, 2, 2));
        assert!(nf.loss.is_nan());
        assert_eq!(nf.good.iter().map(|s| s.step).collect::<Vec<_>>(), [1, 2]);
        for s in 1..=2 {
            reference.train_step(&batch(s)).unwrap();
        }
        for ((n, a), (m, b)) in t.state_tensors().iter().zip(&reference.state_tensors()) {
            assert_eq!(n, m);
            assert!(a.equal(b), "{n}: not the state after the last good step");
        }
    }

    /// 1 process × B against `world` processes × B/world (threads here, one Gloo group over
    /// 127.0.0.1), same initial weights, 3 AdamW steps on the same global batches (rank r takes
    /// rows r, r + world, … of each, as the loader's sampler splits them).
    fn data_parallel_matches_one_process(world: usize) {
        let _rng = crate::torch_rng();
        let cfg = TrainConfig { batch_size: 8, depth: Some(2), ..crate::config::tiny() };
        let plan = cfg.plan(64, Device::Cpu).unwrap();
        let peak_lr = plan.schedule.lr;
        let global = |s: i64| {
            let n = 8 * 2 * 16 * 16 * 3;
            let v: Vec<u8> = (0..n).map(|i| ((i * (2 * s + 1) + 3 * s) % 251) as u8).collect();
            Tensor::from_slice(&v).view([8, 2, 16, 16, 3])
        };
        let mut one = Trainer::new(plan.clone(), Device::Cpu);
        let init: Vec<(String, Tensor)> =
            one.moco.named_tensors().into_iter().map(|(n, t)| (n, t.detach().copy())).collect();
        let losses: Vec<f64> = (1..=3).map(|s| one.train_step(&global(s)).unwrap().loss).collect();
        let want: Vec<(String, Tensor)> = one.state_tensors();
        let init = std::sync::Arc::new(std::sync::Mutex::new(init));
        let out = crate::dist::tests::on_ranks(world, move |g| {
            let mut t = Trainer::new(plan.clone(), Device::Cpu);
            let named: HashMap<String, Tensor> =
                init.lock().unwrap().iter().map(|(n, x)| (n.clone(), x.copy())).collect();
            t.moco.load_named(&named).unwrap();
            let (rank, world) = (g.rank as i64, g.world as i64);
            t.distribute(g).unwrap();
            let rows = Tensor::arange_start_step(rank, 8, world, (Kind::Int64, Device::Cpu));
            let mut ls = Vec::new();
            for s in 1..=3 {
                ls.push(t.train_step(&global(s).index_select(0, &rows)).unwrap().loss);
            }
            (
                ls,
                t.state_tensors()
                    .into_iter()
                    .map(|(n, x)| (n, x.detach().copy()))
                    .collect::<Vec<_>>(),
            )
        });
        for (rank, (ls, state)) in out.into_iter().enumerate() {
            for (a, b) in ls.iter().zip(&losses) {
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs(),
                    "rank {rank}: loss {a} vs one process {b}"
                );
            }
            for ((n, a), (m, b)) in state.iter().zip(&want) {
                assert_eq!(n, m);
                let rel = (a - b).norm().double_value(&[]) / b.norm().double_value(&[]).max(1e-12);
                // Gradients that are zero in exact arithmetic (the key part of every qkv bias,
                // the final norm's bias: see the equivalence test) are float noise on both
                // sides, and Adam turns noise into ±lr per step: 3 steps, both sides.
                let noise = n.contains("qkv.bias") || n.contains("encoder.norm.bias");
                let max = (a - b).abs().max().double_value(&[]);
                // Tensors whose exact value is 0 (a BN running mean after a zero-mean layer)
                // hold noise too: an absolute floor of 1e-6 on O(1) quantities.
                let ok = rel < 1e-5 || max < 1e-6 || (noise && max <= 6.0 * peak_lr);
                assert!(
                    ok,
                    "rank {rank}: {n} differs from one process by {rel:.2e} (max {max:.2e})"
                );
            }
        }
    }

    #[test]
    fn two_ranks_train_as_one_process_of_the_global_batch() {
        data_parallel_matches_one_process(2);
    }

    #[test]
    fn four_ranks_train_as_one_process_of_the_global_batch() {
        data_parallel_matches_one_process(4);
    }
}
