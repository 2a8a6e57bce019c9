//! `twoview train`: MoCo v3 pretraining from shards. Wiring only: the configuration layers
//! and the run folder go to `twoview_model::train_loop` (which decides what the run does), the
//! shards to the loader (twoview-pipeline), the loader's u8 batches through [`LoaderFeed`] to
//! the device; this file prints what happens and maps the outcome to an exit status.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tch::{Device, Tensor};
use twoview_model::checkpoint::{self, DataIdentity, Loaded};
use twoview_model::dist::{Group, Launch};
use twoview_model::knn::{KnnParams, KnnResult};
use twoview_model::train::{Layers, Plan, TrainConfig, Trainer};
use twoview_model::train_loop::{
    Allow, BoxError, Event, Fed, Feed, Hooks, Outcome, RunInputs, TrainLoop,
};
use twoview_pipeline::augment::{Photometric, Recipe};
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
    /// Data-parallel runs (under torchrun, srun or RANK/WORLD_SIZE): seconds the rendezvous and
    /// every collective may take before a lost peer is an error.
    #[arg(long, default_value_t = 300)]
    dist_timeout: u64,
}

/// The recipe offline views of `shards` were made with (`prep-shards --views`), checked
/// against `--recipe`.
fn views_recipe(args: &Args) -> anyhow::Result<Recipe> {
    let m = twoview_formats::Manifest::load(&args.shards)?;
    let vs = twoview_pipeline::prep::ViewsSettings::recorded(&m).with_context(|| {
        format!("--views: {} has no offline views (prep-shards --views K)", args.shards.display())
    })?;
    let r = vs.recipe;
    if args.recipe != "mocov3_vit" && args.recipe != r.name {
        bail!(
            "--recipe {:?} with --views: the views in {} were made with recipe {:?}",
            args.recipe,
            args.shards.display(),
            r.name
        );
    }
    Ok(r)
}

/// What the command line gives: the --config file's keys, then --preset, then each --set.
fn layers(args: &Args) -> anyhow::Result<Layers> {
    let mut layers = Layers::new();
    if let Some(p) = &args.config {
        layers = layers.file(p)?;
    }
    if let Some(p) = &args.preset {
        layers = layers.preset(p)?;
    }
    for kv in &args.set {
        layers = layers.set(kv)?;
    }
    Ok(layers)
}

/// The run's configuration: the saved one with run keys changed on --resume, else the layers.
fn configuration(layers: &Layers, resumed: Option<&Loaded>) -> anyhow::Result<TrainConfig> {
    if let Some(l) = resumed {
        return Ok(layers.resolve_on_resume(&l.state.plan.config)?);
    }
    let (config, notes) = layers.resolve()?;
    for n in notes {
        eprintln!("train: optimizer {}: {n}", config.optimizer);
    }
    Ok(config)
}

/// What this run trains on, as recorded in its checkpoints and compared on --resume.
fn run_inputs(args: &Args, rows: u64, recipe: &Recipe) -> anyhow::Result<RunInputs> {
    let manifest = twoview_formats::Manifest::path_in(&args.shards);
    Ok(RunInputs {
        data: DataIdentity {
            manifest_checksum: twoview_formats::file_checksum(&manifest)?,
            train_rows: rows,
        },
        recipe: serde_json::to_value(recipe)?,
        shards: args.shards.clone(),
        device: args.device.clone(),
    })
}

/// Pinned (page-locked) host memory from libtorch's own allocator for batch buffers, so that
/// copies to the GPU are asynchronous. A buffer that cannot be pinned is an error (the loader
/// then fails to start), never pageable memory in disguise.
struct PinnedAlloc {
    held: Mutex<std::collections::HashMap<usize, Tensor>>,
}

// SAFETY: each buffer is the data of a pinned u8 tensor of `bytes + ALIGN` bytes, started at
// its first ALIGN-aligned byte (so `bytes` remain), kept alive in `held` -- and used by nothing
// else -- until `free` removes it.
unsafe impl BatchAlloc for PinnedAlloc {
    fn alloc(&self, bytes: usize) -> Option<NonNull<u8>> {
        let t = match twoview_model::shim::empty_pinned(bytes + ALIGN) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("train: error: cannot pin {bytes} bytes for a batch buffer: {e}");
                return None;
            }
        };
        let aligned = (t.data_ptr() as usize).next_multiple_of(ALIGN);
        self.held.lock().expect("not poisoned").insert(aligned, t);
        NonNull::new(aligned as *mut u8)
    }

    unsafe fn free(&self, ptr: NonNull<u8>, _bytes: usize) {
        self.held.lock().expect("not poisoned").remove(&(ptr.as_ptr() as usize));
    }
}

/// A loader batch as host bytes for the hand-off (`twoview_model::handoff`): the buffer goes
/// back to the loader's ring when this is dropped.
struct HostBatch(Batch);

impl AsRef<[u8]> for HostBatch {
    fn as_ref(&self) -> &[u8] {
        self.0.pixels()
    }
}

/// The loader as the training loop's [`Feed`]: host batches, which the loop hands to the device.
struct LoaderFeed {
    loader: Loader,
    size: i64,
}

fn model_cursor(c: Cursor) -> checkpoint::Cursor {
    checkpoint::Cursor { epoch: c.epoch, batch: c.batch }
}

impl Feed for LoaderFeed {
    fn next_batch(&mut self) -> Option<Result<Fed, BoxError>> {
        let mut batch = match self.loader.next_batch()? {
            Ok(b) => b,
            Err(e) => return Some(Err(e.into())),
        };
        let s = self.size;
        Some(Ok(Fed {
            shape: [batch.len as i64, 2, s, s, 3],
            at: model_cursor(batch.cursor),
            next: model_cursor(batch.next_cursor),
            photometric: std::mem::take(&mut batch.photometric),
            host: Box::new(HostBatch(batch)),
        }))
    }

    fn waited(&self) -> Duration {
        self.loader.stats().wait
    }

    fn replaced_rows(&self) -> u64 {
        self.loader.stats().replaced
    }
}

/// The loader for `plan` from `start`, augmenting on the fly (or serving offline views), into
/// pinned buffers on CUDA.
fn open_loader(
    args: &Args,
    set: ShardSet,
    recipe: Recipe,
    plan: &Plan,
    start: checkpoint::Cursor,
    device: Device,
    group: Option<&Group>,
) -> anyhow::Result<Loader> {
    let c = &plan.config;
    // Data-parallel: this rank's share of every global batch (the sampler splits by rank).
    let (rank, world) = group.map_or((0, 1), |g| (g.rank, g.world));
    let mut lc = LoaderConfig::new(c.batch_size / world, plan.moco.vit.image_size as u32);
    lc.rank = rank as u64;
    lc.world = world as u64;
    lc.seed = c.seed;
    lc.start = Cursor { epoch: start.epoch, batch: start.batch };
    if c.threads > 0 {
        lc.threads = c.threads;
    }
    lc.prefetch = c.prefetch.max(1);
    lc.dct_scaled_decode = c.dct_scaled_decode;
    if c.on_bad_row == "replace" {
        lc.on_bad_row = BadRowPolicy::Replace;
    }
    if c.augment_on == "device" {
        lc.photometric = Photometric::Deferred;
        eprintln!("train: photometric steps (jitter, grayscale, blur, solarize) on {device:?}");
    }
    if args.views {
        eprintln!(
            "train: offline views of {} (no augmentation at load time)",
            args.shards.display()
        );
        return Ok(Loader::from_views(&args.shards, "train", lc)?);
    }
    let alloc: Arc<dyn BatchAlloc> = if device.is_cuda() {
        Arc::new(PinnedAlloc { held: Mutex::new(Default::default()) })
    } else {
        Arc::new(HeapAlloc)
    };
    Ok(Loader::new(set, recipe, lc, alloc)?)
}

/// kNN monitoring data: train rows (the memory bank) and val rows (the queries).
struct KnnData {
    train: ShardSet,
    val: ShardSet,
    classes: i64,
}

/// The val split of --val-shards (or --shards) for kNN, if there is one.
fn knn_data(args: &Args) -> anyhow::Result<Option<KnnData>> {
    let val_dir = args.val_shards.as_ref().unwrap_or(&args.shards);
    let val = match ShardSet::open(val_dir, "val") {
        Ok(val) => val,
        Err(e) if args.val_shards.is_some() => return Err(e).context("--val-shards"),
        Err(_) => {
            eprintln!("train: {} has no val split: no kNN monitoring", val_dir.display());
            return Ok(None);
        }
    };
    let train = ShardSet::open(&args.shards, "train")?;
    train.check_same_classes(&val).context("--val-shards")?;
    let classes = train.manifest().classes.len().max(1) as i64;
    Ok(Some(KnnData { train, val, classes }))
}

/// The command line's side of the loop: Ctrl-C, kNN on the shards, printing.
struct Cli {
    knn: Option<KnnData>,
    progress: Progress,
    start_step: u64,
}

impl Hooks for Cli {
    fn stop_requested(&mut self) -> bool {
        crate::signals::stop_requested()
    }

    fn knn(&mut self, trainer: &Trainer) -> Result<Option<(KnnResult, usize)>, BoxError> {
        let Some(d) = &self.knn else { return Ok(None) };
        let c = &trainer.plan.config;
        let p = KnnParams {
            classes: d.classes,
            k: c.knn_k,
            temperature: c.knn_temperature,
            chunk: 512,
        };
        let limits = (c.knn_train_limit, c.knn_val_limit);
        let autocast = trainer.plan.autocast;
        let r = crate::features::knn_eval(&trainer.moco, autocast, &d.train, &d.val, limits, p)?;
        Ok(Some((r, spread_rows(d.train.len(), limits.0).len())))
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Logged(r) => self.progress.update(
                r.step - self.start_step,
                format!(
                    "loss {:.4} · {:.0} img/s · data-wait {:.1} %",
                    r.loss,
                    r.img_per_s,
                    100.0 * r.data_wait
                ),
            ),
            Event::Knn(r) => self.progress.println(&format!(
                "train: step {}: kNN top-1 {:.2} %, top-5 {:.2} % ({} val images)",
                r.step, r.top1, r.top5, r.val_images
            )),
            Event::Spike { step, norm, factor } => self.progress.println(&format!(
                "train: warning: step {step}: first-layer gradient norm {norm:.3e} is over \
                 {factor}× its recent median"
            )),
            Event::Saved { dir, .. } => {
                self.progress.println(&format!("train: checkpoint {}", dir.display()))
            }
        }
    }
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

/// The device and, under a launcher (torchrun, SLURM, RANK/WORLD_SIZE), the data-parallel
/// group this process joins.
fn join(args: &Args) -> anyhow::Result<(Device, Option<Arc<Group>>)> {
    let Some(l) = Launch::from_env()? else {
        return Ok((twoview_model::device::init(&args.device)?, None));
    };
    let device = twoview_model::dist::rank_device(&args.device, &l)?;
    let cuda = match device {
        Device::Cuda(i) => Some(i),
        _ => None,
    };
    let timeout = Duration::from_secs(args.dist_timeout.max(1));
    let g = Group::join(&l, timeout, cuda)?;
    if g.rank == 0 {
        eprintln!(
            "train: data-parallel: {} processes ({}, {}, rendezvous {}:{}, timeout {} s)",
            l.world,
            l.source,
            if cuda.is_some() { "NCCL for CUDA tensors, Gloo for CPU ones" } else { "Gloo" },
            l.master_addr,
            l.master_port,
            timeout.as_secs()
        );
    }
    Ok((device, Some(Arc::new(g))))
}

/// The configuration on the command line (or the run's, on --resume) against the shards.
fn resolve_plan(
    args: &Args,
    resumed: Option<&Loaded>,
    rows: u64,
    device: Device,
    group: Option<&Group>,
) -> anyhow::Result<Plan> {
    let layers = layers(args)?;
    let config = configuration(&layers, resumed)?;
    if config.torch_threads > 0 {
        tch::set_num_threads(config.torch_threads);
    }
    if device.is_cuda() {
        twoview_model::amp::set_tf32(config.tf32);
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let plan = layers.plan(&config, rows, device)?;
    if let Some(g) = group
        && !plan.config.batch_size.is_multiple_of(g.world)
    {
        bail!(
            "batch_size {} is the global batch (moco-v3's --batch-size): it must divide by the {} \
             processes, each taking batch_size / {}",
            plan.config.batch_size,
            g.world,
            g.world
        );
    }
    Ok(plan)
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let (device, group) = join(args)?;
    let main = group.as_ref().is_none_or(|g| g.rank == 0);
    // One trainer per run folder: taken before anything in it is touched (a live trainer's
    // checkpoint temporaries must not be cleaned by a second one); held until the run ends.
    let _lock = main.then(|| twoview_formats::lock_dir(&args.out, "trainer")).transpose()?;
    let resumed = twoview_model::train_loop::resume_point(&args.out, args.resume, device, main)?;
    if args.resume && resumed.is_none() && main {
        eprintln!(
            "train: --resume: no checkpoint in {}, starting from scratch",
            args.out.display()
        );
    }
    let train_set = ShardSet::open(&args.shards, "train")?;
    let plan = resolve_plan(args, resumed.as_ref(), train_set.len(), device, group.as_deref())?;
    let recipe =
        if args.views { views_recipe(args)? } else { Recipe::preset_or_file(&args.recipe)? };
    let inputs = run_inputs(args, train_set.len(), &recipe)?;
    if let Some(l) = &resumed {
        let allow =
            Allow { data_change: args.allow_data_change, recipe_change: args.allow_recipe_change };
        for w in twoview_model::train_loop::check_resume(&l.state, &inputs, allow)? {
            eprintln!("train: warning: {w}");
        }
    }
    if main {
        eprintln!("train: {}", describe(&plan, device));
    }
    let mut tl =
        TrainLoop::new(plan.clone(), device, &args.out, inputs, resumed.as_ref(), group.clone())?;
    if main {
        report_start(&tl, resumed.as_ref());
    }
    if tl.start_step() >= plan.steps && resumed.is_some() {
        eprintln!(
            "train: the run in {} already finished ({} steps)",
            args.out.display(),
            plan.steps
        );
        return Ok(ExitCode::SUCCESS);
    }
    let knn = if main { knn_data(args)? } else { None };
    let loader =
        open_loader(args, train_set, recipe, &plan, tl.cursor(), device, group.as_deref())?;
    let mut feed = LoaderFeed { loader, size: plan.moco.vit.image_size };
    crate::signals::install();
    let todo = plan.steps.saturating_sub(tl.start_step());
    let progress = if main { Progress::new(todo, "steps") } else { Progress::hidden() };
    let mut cli = Cli { knn, progress, start_step: tl.start_step() };
    let outcome = tl.run(&mut feed, &mut cli);
    cli.progress.finish();
    report_end(args, &plan, outcome?, main)
}

fn report_start(tl: &TrainLoop, resumed: Option<&Loaded>) {
    if let Some(l) = resumed {
        eprintln!(
            "train: resumed from {} (step {}, epoch {}, batch {})",
            l.dir.display(),
            l.step,
            l.state.cursor.epoch,
            l.state.cursor.batch
        );
    }
    let first = tl.trainer().first_layer_names();
    eprintln!(
        "train: first-layer gradient norm over {} tensors ({}…)",
        first.len(),
        first.first().map_or("", String::as_str)
    );
}

/// Prints how the run ended (and draws its curves) and gives the exit status.
fn report_end(args: &Args, plan: &Plan, outcome: Outcome, main: bool) -> anyhow::Result<ExitCode> {
    let good =
        |p: &Option<PathBuf>| p.as_ref().map_or("(none yet)".into(), |p| p.display().to_string());
    match outcome {
        Outcome::NonFinite { step, loss, at, last_good } => {
            eprintln!(
                "train: error: the loss is {loss} at step {step} (epoch {}, batch {}); stopping \
                 without applying it. The last good checkpoint is {} — lower the lr, enable \
                 grad_clip, or check the data, then rerun with --resume.",
                at.epoch,
                at.batch,
                good(&last_good)
            );
            Ok(ExitCode::from(EXIT_NON_FINITE))
        }
        Outcome::Interrupted { step, .. } => {
            eprintln!("train: interrupted at step {step}; rerun with --resume to continue");
            Ok(ExitCode::from(EXIT_INTERRUPTED))
        }
        Outcome::AlreadyDone { steps } => {
            eprintln!("train: the run in {} already finished ({steps} steps)", args.out.display());
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Finished { .. } if !main => Ok(ExitCode::SUCCESS),
        Outcome::Finished { steps, secs, last_loss, data_wait } => {
            plot(&args.out);
            eprintln!(
                "train: done: {steps} steps in {secs:.0} s ({:.1} img/s), last loss \
                 {last_loss:.4}, data-wait {:.1} %",
                steps as f64 * plan.config.batch_size as f64 / secs.max(1e-9),
                100.0 * data_wait
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn plot(run: &Path) {
    let png = run.join("plot.png");
    match crate::plot::plot_run(run, &png) {
        Ok(_) => eprintln!("train: curves in {}", png.display()),
        Err(e) => eprintln!("train: warning: no plot: {e:#}"),
    }
}
