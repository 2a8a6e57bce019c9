use std::fs;

use super::*;
use crate::config::TrainConfig;

/// Batches that depend only on where they are in the data order, as the loader's do.
struct Synthetic {
    next: Cursor,
    per_epoch: u64,
    batch: i64,
}

impl Synthetic {
    fn at(cursor: Cursor) -> Self {
        Self { next: cursor, per_epoch: 4, batch: 4 }
    }
}

impl Feed for Synthetic {
    fn next_batch(&mut self) -> Option<Result<Fed, BoxError>> {
        let at = self.next;
        let salt = (at.epoch * 131 + at.batch * 17 + 1) as i64;
        let n = self.batch * 2 * 16 * 16 * 3;
        let host: Vec<u8> = (0..n).map(|i| ((i * salt) % 251) as u8).collect();
        let b = at.batch + 1;
        self.next = if b == self.per_epoch {
            Cursor { epoch: at.epoch + 1, batch: 0 }
        } else {
            Cursor { batch: b, ..at }
        };
        Some(Ok(Fed {
            host: Box::new(host),
            shape: [self.batch, 2, 16, 16, 3],
            at,
            next: self.next,
            photometric: Vec::new(),
        }))
    }
    fn waited(&self) -> Duration {
        Duration::ZERO
    }
}

/// Stops after `after` steps; counts k-NN calls.
#[derive(Default)]
struct Stop {
    after: Option<u64>,
    seen: u64,
    knn_calls: Vec<u64>,
    saved: Vec<u64>,
}

impl Hooks for Stop {
    fn stop_requested(&mut self) -> bool {
        let stop = self.after == Some(self.seen);
        self.seen += 1;
        stop
    }
    fn knn(&mut self, t: &Trainer) -> Result<Option<(KnnResult, usize)>, BoxError> {
        self.knn_calls.push(t.step);
        Ok(Some((KnnResult { top1: 10.0, top5: 50.0, k: 2, n: 8 }, 16)))
    }
    fn event(&mut self, e: Event<'_>) {
        if let Event::Saved { step, .. } = e {
            self.saved.push(step);
        }
    }
}

fn plan(extra: impl FnOnce(&mut TrainConfig)) -> Plan {
    let mut c = TrainConfig {
        epochs: 3.0,
        warmup_epochs: 1.0,
        log_every: 1,
        checkpoint_every: 3,
        knn_every: 4,
        ..crate::config::tiny()
    };
    extra(&mut c);
    c.plan(16, Device::Cpu).unwrap()
}

fn inputs() -> RunInputs {
    RunInputs {
        data: DataIdentity { manifest_checksum: "ab".into(), train_rows: 16 },
        recipe: serde_json::json!({ "name": "mocov3_vit" }),
        shards: "shards".into(),
        device: "cpu".into(),
    }
}

fn run_to_end(run: &Path, resume: bool, hooks: &mut Stop) -> (TrainLoop, Outcome) {
    let resumed = resume_point(run, resume, Device::Cpu, true).unwrap();
    let mut l =
        TrainLoop::new(plan(|_| {}), Device::Cpu, run, inputs(), resumed.as_ref(), None).unwrap();
    let mut feed = Synthetic::at(l.cursor());
    let out = l.run(&mut feed, hooks).unwrap();
    (l, out)
}

fn losses(run: &Path) -> Vec<(u64, f64)> {
    crate::metrics::read(&run.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Record::Train(t) => Some((t.step, t.loss)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_interrupted_run_resumes_bit_identically_in_process() {
    let _rng = crate::torch_rng();
    let dir = tempfile::tempdir().unwrap();
    let (whole, stop) = (dir.path().join("whole"), dir.path().join("stop"));
    let mut hooks = Stop::default();
    let (a, out) = run_to_end(&whole, false, &mut hooks);
    assert!(matches!(out, Outcome::Finished { steps: 12, .. }), "{out:?}");
    // k-NN at the start, every 4 steps, at the end (not twice at the last step).
    assert_eq!(hooks.knn_calls, [0, 4, 8, 12]);

    let mut first = Stop { after: Some(5), ..Stop::default() };
    let (_, out) = run_to_end(&stop, false, &mut first);
    let Outcome::Interrupted { step: 5, checkpoint } = out else { panic!("{out:?}") };
    assert!(checkpoint.ends_with("step-00000005"), "{}", checkpoint.display());
    // A new start without resume is refused, naming the newest checkpoint.
    let err = resume_point(&stop, false, Device::Cpu, true).unwrap_err().to_string();
    assert!(err.contains("already holds a run") && err.contains("step-00000005"), "{err}");
    let mut second = Stop::default();
    let (b, out) = run_to_end(&stop, true, &mut second);
    assert!(matches!(out, Outcome::Finished { steps: 7, .. }), "{out:?}");
    assert_eq!(second.knn_calls, [8, 12], "no step-0 k-NN on resume");
    assert_eq!(b.cursor(), a.cursor());
    for ((n, x), (m, y)) in a.trainer().state_tensors().iter().zip(&b.trainer().state_tensors()) {
        assert_eq!(n, m);
        assert!(x.equal(y), "{n} differs after resume");
    }
    // The metrics of the resumed run are those of the whole run, step for step.
    assert_eq!(losses(&whole), losses(&stop));
    // Started again after the end: nothing to do.
    let mut third = Stop::default();
    let (_, out) = run_to_end(&stop, true, &mut third);
    assert_eq!(out, Outcome::AlreadyDone { steps: 12 });
    let plan_file: PlanFile =
        serde_json::from_str(&fs::read_to_string(stop.join("plan.json")).unwrap()).unwrap();
    assert_eq!((plan_file.recipe.as_str(), plan_file.plan.steps), ("mocov3_vit", 12));
}

#[test]
fn a_non_finite_loss_stops_naming_the_last_good_checkpoint() {
    let _rng = crate::torch_rng();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut l =
        TrainLoop::new(plan(|c| c.debug_nan_at_step = 8), Device::Cpu, &run, inputs(), None, None)
            .unwrap();
    let out = l.run(&mut Synthetic::at(Cursor::default()), &mut Stop::default()).unwrap();
    let Outcome::NonFinite { step: 8, loss, at, last_good: Some(good) } = out else {
        panic!("{out:?}")
    };
    assert!(loss.is_nan());
    assert_eq!(at, Cursor { epoch: 1, batch: 3 });
    assert!(good.ends_with("step-00000006"), "{}", good.display());
    assert_eq!(l.trainer().step, 7);
    let records = crate::metrics::read(&run.join("metrics.jsonl")).unwrap();
    assert_eq!(records.last(), Some(&Record::NonFinite { step: 8, loss: "NaN".into() }));
}

#[test]
fn a_failed_save_stops_the_run_and_says_what_is_kept() {
    let _rng = crate::torch_rng();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut l = TrainLoop::new(plan(|_| {}), Device::Cpu, &run, inputs(), None, None).unwrap();
    // The checkpoints folder cannot be made: a file is in its place.
    fs::write(run.join("checkpoints"), b"in the way").unwrap();
    let err = l.run(&mut Synthetic::at(Cursor::default()), &mut Stop::default()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::SaveFailed { step: 3, last_good: None, .. }), "{text}");
    assert!(text.contains("checkpoint of step 3") && text.contains("(none yet)"), "{text}");
}

#[test]
fn resume_refuses_other_data_or_recipe_unless_allowed() {
    let state = |data, recipe| RunState {
        version: STATE_VERSION,
        step: 3,
        cursor: Cursor::default(),
        plan: plan(|_| {}),
        optimizer_steps: 3,
        data,
        recipe,
    };
    let now = inputs();
    let same = state(Some(now.data.clone()), Some(now.recipe.clone()));
    assert_eq!(check_resume(&same, &now, Allow::default()).unwrap(), Vec::<String>::new());
    let other_rows = DataIdentity { train_rows: 17, ..now.data.clone() };
    let s = state(Some(other_rows), Some(now.recipe.clone()));
    let err = check_resume(&s, &now, Allow::default()).unwrap_err().to_string();
    assert!(err.contains("17 rows") && err.contains("--allow-data-change"), "{err}");
    let allow = Allow { data_change: true, ..Allow::default() };
    assert_eq!(check_resume(&s, &now, allow).unwrap().len(), 1);
    let s = state(Some(now.data.clone()), Some(serde_json::json!({ "name": "byol" })));
    let err = check_resume(&s, &now, Allow::default()).unwrap_err().to_string();
    assert!(err.contains("\"byol\"") && err.contains("--allow-recipe-change"), "{err}");
    let s = state(None, None);
    assert_eq!(check_resume(&s, &now, Allow::default()).unwrap().len(), 1, "older run: warned");
}
