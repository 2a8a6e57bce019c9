//! The training loop of a run folder: steps fed by a [`Feed`] of u8 batches, the
//! log/checkpoint/k-NN cadence, the gradient-spike watch, the non-finite-loss stop, the metrics
//! record, and resume from the folder's newest checkpoint. A command line (`twoview train`)
//! opens the data and wires a loader into [`Feed`]; everything that decides what a run does is
//! here, so that it is tested in-process.
//!
//! RUN_DIR holds `plan.json` (the resolved plan, written atomically at every start),
//! `metrics.jsonl` ([`crate::metrics::Record`] lines) and `checkpoints/step-NNNNNNNN/`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::Error;
use crate::checkpoint::{self, Cursor, DataIdentity, Loaded, RunState, STATE_VERSION};
use crate::config::Plan;
use crate::dist::Group;
use crate::handoff::Uploader;
use crate::knn::KnnResult;
use crate::metrics::{KnnRecord, MetricsLog, Record, TrainRecord};
use crate::train::{NonFinite, StepError, StepStats, Trainer};

/// Errors of a feed or a hook: whatever the caller's crate uses.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One batch for a step, in host memory: the loop moves it to the device through its
/// [`Uploader`], which drops `host` (giving the buffer back to the loader) only once nothing
/// can read it any more.
pub struct Fed {
    /// The bytes of a `[B, 2, S, S, 3]` u8 tensor (C order).
    pub host: Box<dyn AsRef<[u8]>>,
    pub shape: [i64; 5],
    /// Where this batch is in the data order, and the cursor after it.
    pub at: Cursor,
    pub next: Cursor,
    /// Deferred photometric steps to apply on the device (`augment_on = "device"`):
    /// [`crate::photometric`]'s layout, `B * SAMPLE_FLOATS`; empty when the loader applied them.
    pub photometric: Vec<f32>,
}

/// Where batches come from: the loader, as wired by the caller.
pub trait Feed {
    /// The next batch, `None` when the data ended.
    fn next_batch(&mut self) -> Option<Result<Fed, BoxError>>;
    /// Time spent waiting for batches so far.
    fn waited(&self) -> Duration;
    /// Rows replaced so far by the bad-row policy.
    fn replaced_rows(&self) -> u64 {
        0
    }
}

/// What the loop reports as it goes, for printing.
#[derive(Debug)]
pub enum Event<'a> {
    /// A record was written to metrics.jsonl.
    Logged(&'a TrainRecord),
    Knn(&'a KnnRecord),
    /// The first-layer gradient norm was over `factor` × its running median.
    Spike {
        step: u64,
        norm: f64,
        factor: f64,
    },
    /// A checkpoint was written (periodic saves are not reported).
    Saved {
        step: u64,
        dir: &'a Path,
    },
}

/// The caller's side of a run.
pub trait Hooks {
    /// Checked before every step: stop (saving a checkpoint) when true.
    fn stop_requested(&mut self) -> bool {
        false
    }
    /// k-NN of the current model on the val data and how many train images it used; `None`
    /// when there is no val data.
    fn knn(&mut self, _trainer: &Trainer) -> Result<Option<(KnnResult, usize)>, BoxError> {
        Ok(None)
    }
    fn event(&mut self, _event: Event<'_>) {}
}

/// What a run was started with, beyond its plan: recorded in plan.json and every checkpoint,
/// and compared on `--resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInputs {
    pub data: DataIdentity,
    /// The augmentation recipe as the pipeline serialises it.
    pub recipe: serde_json::Value,
    /// Given for plan.json: the shard folder and the device, as the user typed them.
    pub shards: PathBuf,
    pub device: String,
}

/// RUN_DIR/plan.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanFile {
    pub plan: Plan,
    pub recipe: String,
    pub shards: PathBuf,
    pub device: String,
    pub data: DataIdentity,
}

/// Which differences `--resume` accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allow {
    pub data_change: bool,
    pub recipe_change: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `steps` steps taken by this process (the plan's end reached).
    Finished { steps: u64, secs: f64, last_loss: f64, data_wait: f64 },
    /// Stopped on request after `step`, saved in `checkpoint`.
    Interrupted { step: u64, checkpoint: PathBuf },
    /// The loss of step `step` (1-based) was `loss`; nothing of it was applied.
    NonFinite { step: u64, loss: f64, at: Cursor, last_good: Option<PathBuf> },
    /// The run had finished before this start.
    AlreadyDone { steps: u64 },
}

/// RUN_DIR/checkpoints.
pub fn checkpoints(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

/// The checkpoint a start continues from: the newest when `resume`; an error when the folder
/// holds a run and `resume` is not set. Removes temporaries of interrupted saves (the caller
/// holds the run folder's lock, so no live trainer owns them).
///
/// `main`: this process owns the run folder (one process, or rank 0): only it cleans.
pub fn resume_point(
    run: &Path,
    resume: bool,
    device: Device,
    main: bool,
) -> Result<Option<Loaded>, Error> {
    let root = checkpoints(run);
    if main {
        checkpoint::clean_temporaries(&root);
    }
    match (checkpoint::latest(&root)?, resume) {
        (Some(dir), true) => checkpoint::load_dir(&dir, device).map(Some),
        (Some(newest), false) => Err(Error::RunExists { dir: run.to_owned(), newest }),
        (None, _) => Ok(None),
    }
}

/// Refuses to resume `saved` on other shards or with another recipe unless `allow` says so;
/// returns warnings for what was allowed or could not be checked.
pub fn check_resume(saved: &RunState, now: &RunInputs, allow: Allow) -> Result<Vec<String>, Error> {
    let mut warnings = Vec::new();
    match &saved.data {
        Some(d) if *d != now.data && !allow.data_change => {
            return Err(Error::Resume(format!(
                "{} are not the shards this run trained on (checkpoint: manifest {} with {} \
                 rows; now: manifest {} with {} rows); steps per epoch, the lr and momentum \
                 schedules and the data order depend on them. Use the run's shards, or pass \
                 --allow-data-change to continue anyway",
                now.shards.display(),
                d.manifest_checksum,
                d.train_rows,
                now.data.manifest_checksum,
                now.data.train_rows
            )));
        }
        Some(d) if *d != now.data => {
            warnings.push("--allow-data-change: the shards differ from the run's".into())
        }
        Some(_) => {}
        None => warnings.push("the checkpoint records no data identity (older run)".into()),
    }
    if let Some(r) = &saved.recipe
        && *r != now.recipe
        && !allow.recipe_change
    {
        let name = |v: &serde_json::Value| v["name"].as_str().unwrap_or("?").to_owned();
        return Err(Error::Resume(format!(
            "recipe {:?} is not the one this run trained with ({:?}); pass the run's --recipe, \
             or --allow-recipe-change to continue anyway",
            name(&now.recipe),
            name(r)
        )));
    }
    Ok(warnings)
}

/// Running median of the first layer's gradient norm, for spike flags.
#[derive(Debug)]
struct SpikeWatch {
    recent: VecDeque<f64>,
    factor: f64,
}

impl SpikeWatch {
    fn check(&mut self, v: f64) -> bool {
        let spike = self.recent.len() >= 10 && {
            let mut s: Vec<f64> = self.recent.iter().copied().collect();
            s.sort_by(f64::total_cmp);
            v > self.factor * s[s.len() / 2]
        };
        if self.recent.len() == 50 {
            self.recent.pop_front();
        }
        self.recent.push_back(v);
        spike
    }
}

/// Throughput since the previous log record.
#[derive(Debug)]
struct Window {
    /// When this process started stepping.
    t0: Instant,
    start: Instant,
    waited: Duration,
    step: u64,
}

/// A run folder's training, from a fresh start or a checkpoint.
#[derive(Debug)]
pub struct TrainLoop {
    trainer: Trainer,
    uploader: Uploader,
    /// (step, the cursor of its batch) of the steps enqueued and not yet read.
    unread: VecDeque<(u64, Cursor)>,
    run: PathBuf,
    inputs: RunInputs,
    cursor: Cursor,
    /// metrics.jsonl, on the process that writes the run's files.
    metrics: Option<MetricsLog>,
    spikes: SpikeWatch,
    start_step: u64,
    saved_at: u64,
}

impl TrainLoop {
    /// Builds the trainer for `plan` (restored from `resumed` when given), writes plan.json and
    /// opens metrics.jsonl (dropping records after the checkpoint's step).
    ///
    /// With a data-parallel `group`, every rank runs the same loop on its share of each batch;
    /// rank 0 alone writes plan.json, metrics.jsonl and checkpoints (the others wait for it at
    /// each save) and runs the k-NN evaluations.
    pub fn new(
        plan: Plan,
        device: Device,
        run: &Path,
        inputs: RunInputs,
        resumed: Option<&Loaded>,
        group: Option<Arc<Group>>,
    ) -> Result<Self, Error> {
        let main = group.as_ref().is_none_or(|g| g.rank == 0);
        let mut trainer = Trainer::new(plan.clone(), device);
        let mut cursor = Cursor::default();
        if let Some(l) = resumed {
            trainer.restore(l)?;
            cursor = l.state.cursor;
        }
        if let Some(g) = group {
            trainer.distribute(g)?;
        }
        let start_step = trainer.step;
        if !main {
            return Ok(Self::with(trainer, device, run, inputs, cursor, None));
        }
        std::fs::create_dir_all(run).map_err(Error::file("cannot create", run))?;
        let file = PlanFile {
            plan: plan.clone(),
            recipe: inputs.recipe["name"].as_str().unwrap_or("?").to_owned(),
            shards: inputs.shards.clone(),
            device: inputs.device.clone(),
            data: inputs.data.clone(),
        };
        let text = serde_json::to_string_pretty(&file).expect("a plan serialises") + "\n";
        crate::metrics::write_atomic(&run.join("plan.json"), text.as_bytes())?;
        let metrics = MetricsLog::open(&run.join("metrics.jsonl"), start_step)?;
        Ok(Self::with(trainer, device, run, inputs, cursor, Some(metrics)))
    }

    fn with(
        trainer: Trainer,
        device: Device,
        run: &Path,
        inputs: RunInputs,
        cursor: Cursor,
        metrics: Option<MetricsLog>,
    ) -> Self {
        let factor = trainer.plan.config.spike_factor;
        let start_step = trainer.step;
        Self {
            trainer,
            // Two batches in flight: with the loader's ring of prefetch + 2 buffers, the loader
            // always has one to fill.
            uploader: Uploader::new(device, 2),
            unread: VecDeque::new(),
            run: run.to_owned(),
            inputs,
            cursor,
            metrics,
            spikes: SpikeWatch { recent: VecDeque::new(), factor },
            start_step,
            // A resumed run's start is saved; a new run has no checkpoint yet.
            saved_at: if start_step > 0 { start_step } else { u64::MAX },
        }
    }

    /// Whether this process writes the run's files (one process, or rank 0).
    pub fn is_main(&self) -> bool {
        self.trainer.group().is_none_or(|g| g.rank == 0)
    }

    fn record(&mut self, r: &Record) -> Result<(), Error> {
        match &mut self.metrics {
            Some(m) => m.write(r),
            None => Ok(()),
        }
    }

    /// Every rank has reached this point; with `ok` false on rank 0 (its save failed), the
    /// others stop too, naming why.
    fn join_ranks(&self, ok: bool, what: &str) -> Result<(), Error> {
        let Some(g) = self.trainer.group() else { return Ok(()) };
        let flag = tch::Tensor::from_slice(&[if ok { 0.0f32 } else { 1.0 }]);
        g.all_reduce_max_(&[&flag])?;
        if flag.double_value(&[0]) > 0.0 && ok {
            return Err(Error::Dist(format!("rank 0 failed at {what}; stopping with it")));
        }
        Ok(())
    }

    pub fn trainer(&self) -> &Trainer {
        &self.trainer
    }

    /// Where the next batch must come from (the loader starts here).
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// Steps taken when this process started.
    pub fn start_step(&self) -> u64 {
        self.start_step
    }

    /// The state a checkpoint of now holds.
    pub fn state(&self) -> RunState {
        RunState {
            version: STATE_VERSION,
            step: self.trainer.step,
            cursor: self.cursor,
            plan: self.trainer.plan.clone(),
            optimizer_steps: self.trainer.opt.steps,
            data: Some(self.inputs.data.clone()),
            recipe: Some(self.inputs.recipe.clone()),
        }
    }

    /// Writes a checkpoint of the current step; a failure names the last good one. With a
    /// group: the ranks' weights are checked equal first, rank 0 writes, the others wait for it.
    pub fn save(&mut self) -> Result<PathBuf, Error> {
        let root = checkpoints(&self.run);
        let keep = self.trainer.plan.config.keep_checkpoints;
        let step = self.trainer.step;
        self.trainer.check_same_weights(&format!("the checkpoint of step {step}"))?;
        let saved = if self.is_main() {
            checkpoint::save(&root, step, &self.trainer.state_tensors(), &self.state(), keep)
                .map_err(|e| Error::SaveFailed {
                    step,
                    source: Box::new(e),
                    last_good: checkpoint::latest(&root).ok().flatten(),
                })
        } else {
            Ok(root.join(format!("step-{step:08}")))
        };
        self.join_ranks(saved.is_ok(), &format!("the checkpoint of step {step}"))?;
        if saved.is_ok() {
            self.saved_at = step;
        }
        saved
    }

    // DEVIATION: k-NN monitoring on a val split, which moco-v3 does not have (deviations #9).
    fn knn(&mut self, hooks: &mut dyn Hooks) -> Result<(), Error> {
        let step = self.trainer.step;
        if !self.is_main() {
            return self.join_ranks(true, &format!("the k-NN evaluation of step {step}"));
        }
        let found = hooks.knn(&self.trainer).map_err(|source| Error::Knn { step, source });
        self.join_ranks(found.is_ok(), &format!("the k-NN evaluation of step {step}"))?;
        let found = found?;
        if let Some((r, train_images)) = found {
            let rec = KnnRecord {
                step,
                top1: r.top1,
                top5: r.top5,
                k: r.k,
                val_images: r.n,
                train_images,
            };
            self.record(&Record::Knn(rec.clone()))?;
            hooks.event(Event::Knn(&rec));
        }
        Ok(())
    }

    /// Runs until the plan's last step, a stop request, or a non-finite loss.
    pub fn run(&mut self, feed: &mut dyn Feed, hooks: &mut dyn Hooks) -> Result<Outcome, Error> {
        let plan = self.trainer.plan.clone();
        if self.start_step >= plan.steps && self.start_step > 0 {
            return Ok(Outcome::AlreadyDone { steps: plan.steps });
        }
        if self.start_step == 0 && plan.config.knn_every > 0 {
            self.knn(hooks)?;
        }
        let t0 = Instant::now();
        let mut window = Window { t0, start: t0, waited: feed.waited(), step: self.trainer.step };
        let mut last_loss = f64::NAN;
        while self.trainer.step < plan.steps {
            if self.stop_requested(hooks)? {
                if let Some(out) = self.read_steps(&mut window, feed, hooks, &mut last_loss)? {
                    return Ok(out);
                }
                let checkpoint = self.final_save(hooks)?;
                return Ok(Outcome::Interrupted { step: self.trainer.step, checkpoint });
            }
            let step = self.trainer.step;
            let fed = match feed.next_batch() {
                Some(Ok(b)) => b,
                Some(Err(source)) => return Err(Error::Feed { step: step + 1, source }),
                None => {
                    return Err(Error::Feed { step: step + 1, source: "the data ended".into() });
                }
            };
            let mut pixels = self.uploader.upload(fed.host, &fed.shape)?;
            if !fed.photometric.is_empty() {
                pixels = crate::photometric::apply(&pixels, &fed.photometric)?;
            }
            self.trainer.step(&pixels)?;
            drop(pixels);
            self.uploader.stepped()?;
            self.unread.push_back((self.trainer.step, fed.at));
            self.cursor = fed.next;
            let step = self.trainer.step;
            let c = &plan.config;
            let due = |every: u64| every > 0 && step.is_multiple_of(every);
            let last = step == plan.steps;
            let knn_due = due(c.knn_every) && !last;
            // The host reads the device only here: every log_every steps, and before a
            // checkpoint or a k-NN evaluation (which must not see a non-finite step).
            let read_due = due(c.log_every.max(1)) || due(c.checkpoint_every) || knn_due || last;
            if read_due
                && let Some(out) = self.read_steps(&mut window, feed, hooks, &mut last_loss)?
            {
                return Ok(out);
            }
            if due(c.checkpoint_every) {
                self.save()?;
            }
            if knn_due {
                self.knn(hooks)?;
            }
        }
        self.final_save(hooks)?;
        self.knn(hooks)?;
        let secs = t0.elapsed().as_secs_f64();
        Ok(Outcome::Finished {
            steps: self.trainer.step - self.start_step,
            secs,
            last_loss,
            data_wait: feed.waited().as_secs_f64() / secs.max(1e-9),
        })
    }

    /// Reads the steps enqueued since the last read: spike watch and log records for each, or
    /// the non-finite outcome (the trainer has put the model back to the step before it).
    fn read_steps(
        &mut self,
        window: &mut Window,
        feed: &dyn Feed,
        hooks: &mut dyn Hooks,
        last_loss: &mut f64,
    ) -> Result<Option<Outcome>, Error> {
        let (stats, bad) = match self.trainer.drain() {
            Ok(stats) => (stats, None),
            Err(StepError::NonFinite(NonFinite { step, loss, good })) => {
                (good, Some((step + 1, loss)))
            }
            Err(StepError::Failed(e)) => return Err(e),
        };
        let (img_per_s, data_wait) = window.rates(self.trainer.step, feed, &self.trainer.plan);
        for s in &stats {
            *last_loss = s.loss;
            self.after_step(s, img_per_s, data_wait, window.t0, feed, hooks)?;
        }
        let unread = std::mem::take(&mut self.unread);
        let Some((step, loss)) = bad else { return Ok(None) };
        let at = unread.iter().find(|(s, _)| *s == step).map(|(_, c)| *c).unwrap_or(self.cursor);
        self.cursor = at;
        self.non_finite(step, loss, at).map(Some)
    }

    /// Ctrl-C/SIGTERM. With a group the ranks decide together (any rank's request stops all),
    /// at the steps where they read the device anyway, so that no rank is left in a collective.
    fn stop_requested(&self, hooks: &mut dyn Hooks) -> Result<bool, Error> {
        let mine = hooks.stop_requested();
        let Some(g) = self.trainer.group() else { return Ok(mine) };
        if !self.trainer.step.is_multiple_of(self.trainer.plan.config.log_every.max(1)) {
            return Ok(false);
        }
        let flag = tch::Tensor::from_slice(&[if mine { 1.0f32 } else { 0.0 }]);
        g.all_reduce_max_(&[&flag])?;
        Ok(flag.double_value(&[0]) > 0.0)
    }

    /// A checkpoint of the current step, written unless it exists.
    fn final_save(&mut self, hooks: &mut dyn Hooks) -> Result<PathBuf, Error> {
        if self.saved_at == self.trainer.step {
            return Ok(checkpoints(&self.run).join(format!("step-{:08}", self.trainer.step)));
        }
        let dir = self.save()?;
        if self.is_main() {
            hooks.event(Event::Saved { step: self.trainer.step, dir: &dir });
        }
        Ok(dir)
    }

    fn non_finite(&mut self, step: u64, loss: f64, at: Cursor) -> Result<Outcome, Error> {
        self.record(&Record::NonFinite { step, loss: format!("{loss}") })?;
        let last_good = checkpoint::latest(&checkpoints(&self.run))?;
        Ok(Outcome::NonFinite { step, loss, at, last_good })
    }

    /// Spike watch and log record of one step that was read.
    fn after_step(
        &mut self,
        s: &StepStats,
        img_per_s: f64,
        data_wait: f64,
        t0: Instant,
        feed: &dyn Feed,
        hooks: &mut dyn Hooks,
    ) -> Result<(), Error> {
        let plan = &self.trainer.plan;
        let step = s.step;
        let logged = step.is_multiple_of(plan.config.log_every.max(1)) || step == plan.steps;
        let spike = self.spikes.check(s.grad_norm_first);
        if spike {
            let (norm, factor) = (s.grad_norm_first, self.spikes.factor);
            if self.is_main() {
                hooks.event(Event::Spike { step, norm, factor });
            }
        }
        if !(logged || spike) {
            return Ok(());
        }
        let rec = TrainRecord {
            step,
            epoch: step as f64 / plan.schedule.steps_per_epoch.max(1) as f64,
            loss: s.loss,
            lr: s.lr,
            momentum: s.momentum,
            grad_norm: s.grad_norm,
            grad_norm_first: s.grad_norm_first,
            img_per_s,
            data_wait,
            spike,
            replaced_rows: feed.replaced_rows(),
            elapsed_s: t0.elapsed().as_secs_f64(),
        };
        self.record(&Record::Train(rec.clone()))?;
        if self.is_main() {
            hooks.event(Event::Logged(&rec));
        }
        Ok(())
    }
}

impl Window {
    /// Images per second and the fraction of the time spent waiting for data since the last
    /// call, which restarts the window at `step`.
    fn rates(&mut self, step: u64, feed: &dyn Feed, plan: &Plan) -> (f64, f64) {
        let now = Instant::now();
        let waited = feed.waited();
        let secs = (now - self.start).as_secs_f64().max(1e-9);
        let img_per_s = (step - self.step) as f64 * plan.config.batch_size as f64 / secs;
        let data_wait = waited.saturating_sub(self.waited).as_secs_f64() / secs;
        (self.start, self.waited, self.step) = (now, waited, step);
        (img_per_s, data_wait)
    }
}

#[cfg(test)]
mod tests;
