//! `twoview train`: MoCo v3 pretraining from shards. Wiring only: the loader
//! (twoview-pipeline) feeds u8 batches to the trainer (twoview-model); this file resolves the
//! configuration, moves batches to the device, writes metrics and checkpoints, and resumes.

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use tch::{Device, Kind, Tensor};
use twoview_model::checkpoint;
use twoview_model::knn::{KnnParams, KnnResult};
use twoview_model::train::{Plan, TrainConfig, Trainer};
use twoview_pipeline::augment::Recipe;
use twoview_pipeline::formats::ShardSet;
use twoview_pipeline::loader::eval::spread_rows;
use twoview_pipeline::loader::{
    ALIGN, BadRowPolicy, Batch, BatchAlloc, Cursor, HeapAlloc, Loader, LoaderConfig,
};

use crate::progress::Progress;

/// Exit status when the loss became NaN or infinite (the last checkpoint is kept).
pub const EXIT_NON_FINITE: u8 = 4;
/// Exit status after Ctrl-C / SIGTERM (a checkpoint of the last finished step was written).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Keys `--set` may change on `--resume`; the others define the method and are fixed by the
/// run's first start.
const RUN_KEYS: [&str; 13] = [
    "max_steps",
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

#[derive(Debug, clap::Args)]
#[command(after_help = "Configuration: defaults are the MoCo v3 ViT reference (DESIGN.md); \
--config run.toml sets flat keys (the names of `twoview_model::train::TrainConfig`), then \
--preset, then each --set key=value. The resolved plan is printed, saved as RUN_DIR/plan.json \
and inside every checkpoint.\n\nOutputs in RUN_DIR: metrics.jsonl (one JSON object per logged \
step and per kNN evaluation), plan.json, checkpoints/step-NNNNNNNN/.\n\nExit status: 0 done; \
1 error; 2 usage; 4 the loss became NaN/inf (the last good checkpoint is intact); 130 \
interrupted by Ctrl-C/SIGTERM after saving a checkpoint (rerun with --resume).")]
pub struct Args {
    /// Shard folder made by prep-shards; its `train` split is trained on.
    #[arg(long)]
    shards: PathBuf,
    /// Shard folder whose `val` split is used for kNN monitoring (default: --shards, when it
    /// has a val split).
    #[arg(long)]
    val_shards: Option<PathBuf>,
    /// TOML file of configuration keys.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Model preset: vit_tiny, vit_small, vit_base, vit_large (patch 16, 224 px).
    #[arg(long)]
    preset: Option<String>,
    /// Override one configuration key (repeatable), e.g. --set batch_size=128.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Run folder: metrics, plan, checkpoints.
    #[arg(long)]
    out: PathBuf,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Continue from the newest checkpoint in --out (the configuration is the saved one; only
    /// run keys such as max_steps or log_every may change through --set).
    #[arg(long)]
    resume: bool,
    /// Augmentation recipe: a preset (mocov3_vit, mocov3_resnet, byol, simclr) or a TOML file.
    #[arg(long, default_value = "mocov3_vit")]
    recipe: String,
    /// --resume with other shards than the run's (another manifest or row count): steps per
    /// epoch, the lr/momentum schedules and the data order then change under the run.
    #[arg(long)]
    allow_data_change: bool,
    /// --resume with another augmentation recipe than the run's.
    #[arg(long)]
    allow_recipe_change: bool,
    /// Train on the offline views `prep-shards --views K` wrote into --shards (epoch e uses
    /// variant e mod K; no augmentation at load time) instead of augmenting on the fly. The
    /// recipe is then the one the views were made with.
    #[arg(long)]
    views: bool,
}

/// The recipe offline views of `shards` were made with (`prep-shards --views`).
fn views_recipe(shards: &Path) -> anyhow::Result<Recipe> {
    let m = twoview_formats::Manifest::load(shards)?;
    let vs = twoview_pipeline::prep::ViewsSettings::recorded(&m).with_context(|| {
        format!("--views: {} has no offline views (prep-shards --views K)", shards.display())
    })?;
    Ok(vs.recipe)
}

/// What a run was trained on, saved in every checkpoint and compared on --resume.
fn data_identity(shards: &Path, rows: u64) -> anyhow::Result<serde_json::Value> {
    let manifest = twoview_formats::Manifest::path_in(shards);
    Ok(serde_json::json!({
        "manifest_checksum": twoview_formats::file_checksum(&manifest)?,
        "train_rows": rows,
    }))
}

/// Refuses a resume on other shards or another recipe than the checkpoint's, unless allowed.
fn check_resume_inputs(
    state: &serde_json::Value,
    data: &serde_json::Value,
    recipe: &serde_json::Value,
    args: &Args,
) -> anyhow::Result<()> {
    match state.get("data") {
        Some(saved) if saved != data && !args.allow_data_change => bail!(
            "--resume: {} are not the shards this run trained on (checkpoint: {saved}; now: \
             {data}); steps per epoch, the lr and momentum schedules and the data order depend \
             on them. Use the run's shards, or pass --allow-data-change to continue anyway",
            args.shards.display()
        ),
        Some(saved) if saved != data => {
            eprintln!("train: warning: --allow-data-change: the shards differ from the run's")
        }
        Some(_) => {}
        None => eprintln!("train: warning: the checkpoint records no data identity (older run)"),
    }
    match state.get("recipe") {
        Some(saved) if saved != recipe && !args.allow_recipe_change => bail!(
            "--resume: recipe {:?} is not the one this run trained with ({}); pass the run's \
             --recipe, or --allow-recipe-change to continue anyway",
            args.recipe,
            saved.get("name").and_then(|n| n.as_str()).unwrap_or("?")
        ),
        _ => Ok(()),
    }
}

fn parse_set(kv: &str) -> anyhow::Result<(String, toml::Value)> {
    let (k, v) = kv.split_once('=').with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
    let k = k.trim().to_owned();
    // A TOML literal (number, bool, quoted string) or, failing that, a bare string.
    let value = toml::from_str::<toml::Table>(&format!("v = {v}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(v.trim().to_owned()));
    Ok((k, value))
}

fn config_from(table: toml::Table, origin: &str) -> anyhow::Result<TrainConfig> {
    let (config, notes) =
        TrainConfig::from_table_noted(table, origin).map_err(anyhow::Error::msg)?;
    for n in notes {
        eprintln!("train: optimizer {}: {n}", config.optimizer);
    }
    Ok(config)
}

/// What the command line gives: the --config file's keys, then --preset, then each --set.
fn given_table(args: &Args) -> anyhow::Result<toml::Table> {
    let mut table = match &args.config {
        Some(p) => {
            let text =
                fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
            let file = toml::from_str::<toml::Table>(&text)
                .with_context(|| format!("{} is not valid TOML", p.display()))?;
            file.into_iter().map(|(k, v)| (TrainConfig::canonical_key(&k), v)).collect()
        }
        None => toml::Table::new(),
    };
    if let Some(p) = &args.preset {
        table.insert("preset".into(), toml::Value::String(p.clone()));
    }
    for kv in &args.set {
        let (k, v) = parse_set(kv)?;
        table.insert(TrainConfig::canonical_key(&k), v);
    }
    Ok(table)
}

/// The saved configuration, with what the command line sets on top: run keys may change;
/// method keys may be repeated (rerunning the same command with `--resume` works) but not
/// changed.
fn resumed_config(saved: &serde_json::Value, args: &Args) -> anyhow::Result<TrainConfig> {
    let saved: TrainConfig =
        serde_json::from_value(saved.clone()).context("checkpoint state: config")?;
    let saved_table = toml::Table::try_from(&saved).context("config to TOML")?;
    let mut table = saved_table.clone();
    for (k, v) in given_table(args)? {
        let same = saved_table.get(&k).is_some_and(|old| {
            old == &v
                || matches!((old, &v), (toml::Value::Float(a), toml::Value::Integer(b)) if *a == *b as f64)
        });
        if !same && !RUN_KEYS.contains(&k.as_str()) {
            let old = saved_table.get(&k).map_or("unset".to_owned(), |o| o.to_string());
            bail!(
                "{k} cannot change on --resume (the run has {old}; it defines the method); keys \
                 that can: {}",
                RUN_KEYS.join(", ")
            );
        }
        table.insert(k, v);
    }
    config_from(table, "configuration on --resume")
}

/// Pinned (page-locked) host memory from libtorch for batch buffers, so copies to the GPU can
/// be asynchronous. Each buffer is a pinned u8 tensor kept alive until the loader frees it.
struct PinnedAlloc {
    device: Device,
    held: Mutex<std::collections::HashMap<usize, Tensor>>,
}

// SAFETY: each buffer is the data of a pinned u8 tensor of `bytes + ALIGN` bytes, started at
// its first ALIGN-aligned byte (so `bytes` remain), kept alive in `held` -- and used by nothing
// else -- until `free` removes it.
unsafe impl BatchAlloc for PinnedAlloc {
    fn alloc(&self, bytes: usize) -> Option<NonNull<u8>> {
        let t = Tensor::f_empty([(bytes + ALIGN) as i64], (Kind::Uint8, Device::Cpu))
            .and_then(|t| t.f_pin_memory(self.device))
            .ok()?;
        let base = t.data_ptr() as usize;
        let aligned = base.next_multiple_of(ALIGN);
        self.held.lock().expect("not poisoned").insert(aligned, t);
        NonNull::new(aligned as *mut u8)
    }

    unsafe fn free(&self, ptr: NonNull<u8>, _bytes: usize) {
        self.held.lock().expect("not poisoned").remove(&(ptr.as_ptr() as usize));
    }
}

/// A batch as a tensor on the device. On CPU it wraps the loader's buffer (no copy: the
/// normalisation reads it directly); on CUDA it is a non-blocking copy from pinned memory, so
/// the caller keeps the `Batch` alive until the step that used it has synchronised.
fn to_device(batch: &Batch, s: i64, device: Device) -> Tensor {
    let px = batch.pixels();
    let dims = [batch.len as i64, 2, s, s, 3];
    // SAFETY: `px` holds exactly len·2·s·s·3 bytes laid out as `dims`, and outlives every use
    // of the tensor (the caller keeps `batch` until the step is done).
    let host = unsafe { Tensor::from_blob(px.as_ptr(), &dims, &[], Kind::Uint8, Device::Cpu) };
    if device == Device::Cpu { host } else { host.to_device_(device, Kind::Uint8, true, false) }
}

/// Running median of the first layer's gradient norm, for spike flags.
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

struct Metrics {
    file: fs::File,
}

impl Metrics {
    /// Opens RUN_DIR/metrics.jsonl for appending, dropping lines past `keep_until` (a resumed
    /// run re-logs the steps after its checkpoint).
    fn open(path: &Path, keep_until: u64) -> anyhow::Result<Self> {
        if let Ok(text) = fs::read_to_string(path) {
            let kept: String = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v["step"].as_u64())
                        .is_some_and(|s| s <= keep_until)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            let tmp = path.with_extension("jsonl.tmp");
            fs::write(&tmp, kept)?;
            fs::rename(&tmp, path)?;
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self { file })
    }

    fn write(&mut self, v: serde_json::Value) -> anyhow::Result<()> {
        writeln!(self.file, "{v}").context("writing metrics.jsonl")?;
        self.file.flush()?;
        Ok(())
    }
}

/// kNN monitoring data: train rows (the memory bank) and val rows (the queries).
struct KnnData {
    train: ShardSet,
    val: ShardSet,
    classes: i64,
}

fn run_knn(trainer: &Trainer, data: &KnnData) -> anyhow::Result<KnnResult> {
    let c = &trainer.plan.config;
    let p =
        KnnParams { classes: data.classes, k: c.knn_k, temperature: c.knn_temperature, chunk: 512 };
    let limits = (c.knn_train_limit, c.knn_val_limit);
    crate::features::knn_eval(
        &trainer.moco,
        trainer.plan.autocast,
        &data.train,
        &data.val,
        limits,
        p,
    )
}

fn log_knn(metrics: &mut Metrics, step: u64, r: &KnnResult, train_n: usize) -> anyhow::Result<()> {
    eprintln!(
        "train: step {step}: kNN top-1 {:.2} %, top-5 {:.2} % ({} val images)",
        r.top1, r.top5, r.n
    );
    metrics.write(serde_json::json!({
        "kind": "knn", "step": step, "top1": r.top1, "top5": r.top5, "k": r.k,
        "val_images": r.n, "train_images": train_n,
    }))
}

fn describe(plan: &Plan, device: Device) -> String {
    let v = plan.moco.vit;
    let c = &plan.config;
    let s = &plan.schedule;
    let gflop = v.moco_step_flops_per_image() * c.batch_size as f64 / 1e9;
    format!(
        "ViT {}px/{} dim {} depth {} heads {} · {} images, batch {} → {} steps/epoch · {} epochs \
         ({} warmup) → this run {} steps · lr {:.3e} (base {} × {}/256) · {} · m {}→1 · τ {} · \
         {:?} {} · ≈{:.0} GFLOP/step (backbone)",
        v.image_size,
        v.patch,
        v.dim,
        v.depth,
        v.heads,
        plan.train_images,
        c.batch_size,
        s.steps_per_epoch,
        c.epochs,
        c.warmup_epochs,
        plan.steps,
        s.lr,
        c.base_lr,
        c.batch_size,
        match plan.optimizer {
            twoview_model::optim::OptimizerConfig::Adamw { weight_decay, .. } =>
                format!("AdamW wd {weight_decay}"),
            twoview_model::optim::OptimizerConfig::Lars { weight_decay, .. } =>
                format!("LARS wd {weight_decay}"),
        },
        c.momentum,
        c.temperature,
        device,
        if plan.autocast { "bf16 autocast" } else { "fp32" },
        gflop,
    )
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let device = twoview_model::device::init(&args.device)?;
    // One trainer per run folder: taken before anything in it is touched (a live trainer's
    // checkpoint temporaries must not be cleaned by a second one); held until the run ends.
    let _lock = twoview_formats::lock_dir(&args.out, "trainer")?;
    let ckpt_root = args.out.join("checkpoints");
    checkpoint::clean_temporaries(&ckpt_root);
    let latest = checkpoint::latest(&ckpt_root)?;
    let resumed = match (&latest, args.resume) {
        (Some(dir), true) => Some(checkpoint::load_dir(dir, device)?),
        (Some(dir), false) => bail!(
            "{} already holds a run (newest checkpoint {}); pass --resume to continue it or \
             choose another --out",
            args.out.display(),
            dir.display()
        ),
        (None, true) => {
            eprintln!(
                "train: --resume: no checkpoint in {}, starting from scratch",
                ckpt_root.display()
            );
            None
        }
        (None, false) => None,
    };
    let config = match &resumed {
        Some(l) => resumed_config(&l.state["plan"]["config"], args)?,
        None => config_from(given_table(args)?, "configuration")?,
    };
    if config.torch_threads > 0 {
        tch::set_num_threads(config.torch_threads);
    }
    if device.is_cuda() {
        twoview_model::amp::set_tf32(config.tf32);
    }
    let train_set = ShardSet::open(&args.shards, "train")?;
    let plan = config.plan(train_set.len(), device).map_err(anyhow::Error::msg)?;
    let size = plan.moco.vit.image_size;
    let recipe = if args.views {
        let r = views_recipe(&args.shards)?;
        if args.recipe != "mocov3_vit" && args.recipe != r.name {
            bail!(
                "--recipe {:?} with --views: the views in {} were made with recipe {:?}",
                args.recipe,
                args.shards.display(),
                r.name
            );
        }
        r
    } else {
        Recipe::preset_or_file(&args.recipe)?
    };
    let recipe_json = serde_json::to_value(&recipe)?;
    let data = data_identity(&args.shards, train_set.len())?;
    if let Some(l) = &resumed {
        check_resume_inputs(&l.state, &data, &recipe_json, args)?;
    }
    fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let plan_json = serde_json::json!({ "config": plan.config, "plan": plan, "recipe": recipe.name,
        "shards": args.shards, "device": args.device, "data": data });
    twoview_formats::write_atomic(
        &args.out.join("plan.json"),
        (serde_json::to_string_pretty(&plan_json)? + "\n").as_bytes(),
    )?;
    eprintln!("train: {}", describe(&plan, device));

    let mut trainer = Trainer::new(plan.clone(), device);
    let mut cursor = Cursor::default();
    if let Some(l) = &resumed {
        trainer.restore(l, l.step).map_err(|e| anyhow::anyhow!("{}: {e}", l.dir.display()))?;
        cursor = serde_json::from_value(l.state["cursor"].clone())
            .context("checkpoint state: cursor")?;
        eprintln!(
            "train: resumed from {} (step {}, epoch {}, batch {})",
            l.dir.display(),
            l.step,
            cursor.epoch,
            cursor.batch
        );
    }
    eprintln!(
        "train: first-layer gradient norm over {} tensors ({}…)",
        trainer.first_layer_names().len(),
        trainer.first_layer_names().first().map_or("", String::as_str)
    );
    let start_step = trainer.step;
    if resumed.is_some() && start_step >= plan.steps {
        eprintln!(
            "train: the run in {} already finished ({} steps); nothing to do",
            args.out.display(),
            plan.steps
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut metrics = Metrics::open(&args.out.join("metrics.jsonl"), start_step)?;

    // DEVIATION: k-NN monitoring on a val split, which moco-v3 does not have (deviations #9).
    let val_dir = args.val_shards.clone().unwrap_or_else(|| args.shards.clone());
    let knn_data = match ShardSet::open(&val_dir, "val") {
        Ok(val) => Some(KnnData {
            val: {
                train_set.check_same_classes(&val).context("--val-shards")?;
                val
            },
            classes: train_set.manifest().classes.len().max(1) as i64,
            train: ShardSet::open(&args.shards, "train")?,
        }),
        Err(e) if args.val_shards.is_some() => return Err(e).context("--val-shards"),
        Err(_) => {
            eprintln!("train: {} has no val split: no kNN monitoring", val_dir.display());
            None
        }
    };
    let knn_train_n = |d: &KnnData| spread_rows(d.train.len(), plan.config.knn_train_limit).len();
    if let Some(d) = &knn_data
        && resumed.is_none()
        && plan.config.knn_every > 0
    {
        let r = run_knn(&trainer, d)?;
        log_knn(&mut metrics, 0, &r, knn_train_n(d))?;
    }

    let mut lc = LoaderConfig::new(plan.config.batch_size, size as u32);
    lc.seed = plan.config.seed;
    lc.start = cursor;
    if plan.config.threads > 0 {
        lc.threads = plan.config.threads;
    }
    lc.prefetch = plan.config.prefetch.max(1);
    if plan.config.on_bad_row == "replace" {
        lc.on_bad_row = BadRowPolicy::Replace;
    }
    let alloc: Arc<dyn BatchAlloc> = if device.is_cuda() {
        Arc::new(PinnedAlloc { device, held: Mutex::new(Default::default()) })
    } else {
        Arc::new(HeapAlloc)
    };
    let mut loader = if args.views {
        eprintln!(
            "train: offline views of {} (no augmentation at load time)",
            args.shards.display()
        );
        Loader::from_views(&args.shards, "train", lc)?
    } else {
        Loader::new(train_set, recipe, lc, alloc)?
    };

    crate::signals::install();
    let save = |trainer: &Trainer, cursor: Cursor| -> anyhow::Result<PathBuf> {
        let state = serde_json::json!({
            "step": trainer.step, "cursor": cursor, "plan": trainer.plan,
            "optimizer_steps": trainer.opt.steps, "seed": trainer.plan.config.seed,
            "data": data, "recipe": recipe_json,
            "note": "no random op runs after init: the loader's augmentation is seeded by (seed, epoch, row, view)",
        });
        Ok(checkpoint::save(
            &ckpt_root,
            trainer.step,
            &trainer.state_tensors(),
            &state,
            plan.config.keep_checkpoints,
        )?)
    };

    let mut progress = Progress::new(plan.steps.saturating_sub(start_step), "steps");
    let mut spikes = SpikeWatch { recent: VecDeque::new(), factor: plan.config.spike_factor };
    let t0 = Instant::now();
    let mut window = (Instant::now(), loader.stats().wait, trainer.step);
    let mut held: Option<Batch> = None;
    let mut saved_at = trainer.step;
    let mut last_loss = f64::NAN;
    let mut interrupted = false;
    while trainer.step < plan.steps {
        if crate::signals::stop_requested() {
            interrupted = true;
            break;
        }
        let batch = match loader.next_batch() {
            Some(b) => b?,
            None => bail!("the loader ended before step {}", trainer.step),
        };
        let input = to_device(&batch, size, device);
        let stats = match trainer.train_step(&input) {
            Ok(s) => s,
            Err(nf) => {
                progress.finish();
                metrics.write(serde_json::json!({ "kind": "non_finite", "step": nf.step + 1, "loss": format!("{}", nf.loss) }))?;
                eprintln!(
                    "train: error: the loss is {} at step {} (epoch {}, batch {}); stopping without \
                     applying it. The last good checkpoint is {} — lower the lr, enable grad_clip, \
                     or check the data, then rerun with --resume.",
                    nf.loss,
                    nf.step + 1,
                    batch.cursor.epoch,
                    batch.cursor.batch,
                    checkpoint::latest(&ckpt_root)?
                        .map_or("(none yet)".into(), |p| p.display().to_string())
                );
                return Ok(ExitCode::from(EXIT_NON_FINITE));
            }
        };
        cursor = batch.next_cursor;
        last_loss = stats.loss;
        // On CUDA the copy may still be in flight until the next step's sync: keep the buffer.
        held = device.is_cuda().then_some(batch);
        let step = trainer.step;
        let spike = spikes.check(stats.grad_norm_first);
        if spike {
            eprintln!(
                "train: warning: step {step}: first-layer gradient norm {:.3e} is over {}× its recent median",
                stats.grad_norm_first, plan.config.spike_factor
            );
        }
        if step.is_multiple_of(plan.config.log_every.max(1)) || step == plan.steps || spike {
            let now = Instant::now();
            let wait = loader.stats().wait;
            let secs = (now - window.0).as_secs_f64().max(1e-9);
            let img_s = (step - window.2) as f64 * plan.config.batch_size as f64 / secs;
            let data_wait = (wait - window.1).as_secs_f64() / secs;
            window = (now, wait, step);
            metrics.write(serde_json::json!({
                "kind": "train", "step": step,
                "epoch": step as f64 / plan.schedule.steps_per_epoch as f64,
                "loss": stats.loss, "lr": stats.lr, "momentum": stats.momentum,
                "grad_norm": stats.grad_norm, "grad_norm_first": stats.grad_norm_first,
                "img_per_s": img_s, "data_wait": data_wait, "spike": spike,
                "replaced_rows": loader.stats().replaced,
                "elapsed_s": t0.elapsed().as_secs_f64(),
            }))?;
            progress.update(
                step - start_step,
                format!(
                    "loss {:.4} · {img_s:.0} img/s · data-wait {:.1} %",
                    stats.loss,
                    100.0 * data_wait
                ),
            );
        }
        if plan.config.checkpoint_every > 0 && step.is_multiple_of(plan.config.checkpoint_every) {
            save(&trainer, cursor)?;
            saved_at = step;
        }
        if let Some(d) = &knn_data
            && plan.config.knn_every > 0
            && step.is_multiple_of(plan.config.knn_every)
            && step != plan.steps
        {
            let r = run_knn(&trainer, d)?;
            log_knn(&mut metrics, step, &r, knn_train_n(d))?;
        }
    }
    drop(held);
    progress.finish();
    if saved_at != trainer.step {
        let dir = save(&trainer, cursor)?;
        eprintln!("train: checkpoint {}", dir.display());
    }
    if interrupted {
        eprintln!("train: interrupted at step {}; rerun with --resume to continue", trainer.step);
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    if let Some(d) = &knn_data {
        let r = run_knn(&trainer, d)?;
        log_knn(&mut metrics, trainer.step, &r, knn_train_n(d))?;
    }
    let png = args.out.join("plot.png");
    match crate::plot::plot_run(&args.out, &png) {
        Ok(_) => eprintln!("train: curves in {}", png.display()),
        Err(e) => eprintln!("train: warning: no plot: {e:#}"),
    }
    let secs = t0.elapsed().as_secs_f64();
    let stats = loader.stats();
    eprintln!(
        "train: done: {} steps in {secs:.0} s ({:.1} img/s), last loss {last_loss:.4}, data-wait {:.1} %",
        trainer.step - start_step,
        (trainer.step - start_step) as f64 * plan.config.batch_size as f64 / secs.max(1e-9),
        100.0 * stats.wait.as_secs_f64() / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}
