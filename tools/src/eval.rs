//! `twoview eval knn|linear` and `twoview export`: a trained (or random-init) backbone from a
//! checkpoint, evaluated by k-NN or a linear probe, or written under timm's names.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use twoview_model::amp::EvalPrecision;
use twoview_model::checkpoint;
use twoview_model::knn::{KnnParams, Labeled};
use twoview_model::moco::Moco;
use twoview_model::probe::{ProbeConfig, ProbeProtocol, linear_probe};
use twoview_model::train::Plan;
use twoview_pipeline::formats::ShardSet;
use twoview_pipeline::loader::eval::spread_rows;

use crate::features::features;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Weighted k-NN top-1/top-5 of frozen features (class token after the final norm).
    Knn(KnnArgs),
    /// Linear probe on frozen features (cached once): moco-v3's (default) or MAE's BN head.
    Linear(LinearArgs),
}

/// What both evaluations read: the model and the two splits.
#[derive(clap::Args)]
pub struct Source {
    /// A checkpoint: a step-NNNNNNNN folder, a checkpoints folder or a run folder (newest).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Shards whose `train` split is the memory bank / trains the classifier.
    #[arg(long)]
    train_shards: PathBuf,
    /// Shards whose `val` split is classified.
    #[arg(long)]
    val_shards: PathBuf,
    /// At most this many train / val images, evenly spread (0 = all).
    #[arg(long, default_value_t = 0)]
    train_limit: usize,
    #[arg(long, default_value_t = 0)]
    val_limit: usize,
    /// Evaluate the same architecture at its random init (the run's seed) instead.
    #[arg(long)]
    random_init: bool,
    /// cpu, cuda or cuda:N (features; the linear probe itself trains on the CPU).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Precision of the feature passes: auto (bf16 autocast on CUDA, fp32 on the CPU, whatever
    /// the run trained with), fp32 or bf16.
    #[arg(long, default_value = "auto")]
    precision: EvalPrecision,
}

#[derive(clap::Args)]
pub struct LinearArgs {
    #[command(flatten)]
    src: Source,
    /// Epochs over the cached features (MoCo v3: 90).
    #[arg(long, default_value_t = 90)]
    epochs: usize,
    /// Batch size (MoCo v3: 1024; capped at the number of train images).
    #[arg(long, default_value_t = 1024)]
    batch: i64,
    /// lr = base_lr × batch / 256 (MoCo v3's ViT probe: 3).
    #[arg(long, default_value_t = 3.0)]
    base_lr: f64,
    /// mocov3: moco-v3's main_lincls.py (a linear layer, cosine per epoch); bn-linear: MAE's
    /// head (BatchNorm without affine + linear), cosine per iteration.
    #[arg(long, default_value = "mocov3")]
    protocol: ProbeProtocol,
}

#[derive(clap::Args)]
pub struct KnnArgs {
    #[command(flatten)]
    src: Source,
    /// Neighbours.
    #[arg(long, default_value_t = 20)]
    k: i64,
    /// Vote temperature: weight exp(similarity / T).
    #[arg(long, default_value_t = 0.07)]
    temperature: f64,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// A checkpoint: a step-NNNNNNNN folder, a checkpoints folder or a run folder (newest).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Output safetensors file; its timm configuration goes beside it as `<out>.json`.
    #[arg(long)]
    out: PathBuf,
}

/// The plan and tensors of the checkpoint `path` names, with the model built on `device`
/// (weights loaded, or left at the run's random init).
fn load_model(
    path: &Path,
    device: tch::Device,
    random_init: bool,
) -> anyhow::Result<(Plan, Moco, PathBuf, u64)> {
    let dir = checkpoint::resolve(path)?;
    let loaded = checkpoint::load_dir(&dir, device)?;
    let plan: Plan = loaded.state.plan.clone();
    tch::manual_seed(plan.config.seed as i64);
    let moco = Moco::new(plan.moco, device);
    if !random_init {
        moco.load_named(&loaded.tensors).map_err(|m| m.at(&dir))?;
    }
    Ok((plan, moco, dir, loaded.step))
}

/// An opened evaluation: model, splits, and how to name it in messages.
struct Opened {
    moco: Moco,
    dir: PathBuf,
    step: u64,
    train: ShardSet,
    val: ShardSet,
    classes: i64,
    what: String,
    /// bf16 autocast for the feature passes (from --precision and the device).
    autocast: bool,
    precision: &'static str,
}

fn open(src: &Source) -> anyhow::Result<Opened> {
    let device = twoview_model::device::init(&src.device)?;
    let (_, moco, dir, step) = load_model(&src.checkpoint, device, src.random_init)?;
    let train = ShardSet::open(&src.train_shards, "train")?;
    let val = ShardSet::open(&src.val_shards, "val")?;
    train.check_same_classes(&val)?;
    let classes = train.manifest().classes.len().max(1) as i64;
    let what = if src.random_init { "random init".to_owned() } else { format!("step {step}") };
    let (autocast, precision) = (src.precision.autocast(device), src.precision.name(device));
    Ok(Opened { moco, dir, step, train, val, classes, what, autocast, precision })
}

pub fn run(cmd: &Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Knn(a) => knn_cmd(a),
        Command::Linear(a) => linear_cmd(a),
    }
}

fn knn_cmd(a: &KnnArgs) -> anyhow::Result<ExitCode> {
    let o = open(&a.src)?;
    let p = KnnParams { classes: o.classes, k: a.k, temperature: a.temperature, chunk: 512 };
    let limits = (a.src.train_limit, a.src.val_limit);
    let r = crate::features::knn_eval(&o.moco, o.autocast, &o.train, &o.val, limits, p)?;
    eprintln!(
        "eval knn: {} ({}, {}), k {}, T {}",
        o.dir.display(),
        o.what,
        o.precision,
        r.k,
        a.temperature
    );
    println!(
        "{}",
        serde_json::json!({
            "checkpoint": o.dir, "step": o.step, "random_init": a.src.random_init,
            "top1": r.top1, "top5": r.top5, "k": r.k, "temperature": a.temperature,
            "val_images": r.n, "precision": o.precision,
        })
    );
    Ok(ExitCode::SUCCESS)
}

fn linear_cmd(a: &LinearArgs) -> anyhow::Result<ExitCode> {
    let o = open(&a.src)?;
    let rows = |s: &ShardSet, limit| spread_rows(s.len(), limit);
    let (tf, tl) = features(&o.moco, o.autocast, &o.train, rows(&o.train, a.src.train_limit))?;
    let (vf, vl) = features(&o.moco, o.autocast, &o.val, rows(&o.val, a.src.val_limit))?;
    let cfg = ProbeConfig {
        protocol: a.protocol,
        epochs: a.epochs,
        batch: a.batch,
        base_lr: a.base_lr,
        ..ProbeConfig::default()
    };
    let r = linear_probe(
        Labeled { features: &tf, labels: &tl },
        Labeled { features: &vf, labels: &vl },
        o.classes,
        cfg,
    );
    eprintln!(
        "eval linear: {} ({}), {} probe, {} epochs over {} cached train features",
        o.dir.display(),
        o.what,
        a.protocol.name(),
        a.epochs,
        tf.size()[0]
    );
    println!(
        "{}",
        serde_json::json!({
            "checkpoint": o.dir, "step": o.step, "random_init": a.src.random_init,
            "top1": r.top1, "top5": r.top5, "epochs": a.epochs,
            "train_images": tf.size()[0], "val_images": r.n, "precision": o.precision,
            "protocol": a.protocol.name(),
        })
    );
    Ok(ExitCode::SUCCESS)
}

pub fn export(a: &ExportArgs) -> anyhow::Result<ExitCode> {
    let (plan, moco, dir, step) = load_model(&a.checkpoint, tch::Device::Cpu, false)?;
    let tensors = twoview_model::export::timm_tensors(&moco);
    let tmp = a.out.with_extension("safetensors.tmp");
    tch::Tensor::write_safetensors(&tensors, &tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot fsync {}", tmp.display()))?;
    std::fs::rename(&tmp, &a.out).with_context(|| format!("cannot write {}", a.out.display()))?;
    let meta = serde_json::json!({
        "source": dir, "step": step, "tensors": tensors.len(),
        "timm": twoview_model::export::timm_metadata(&plan.moco.vit),
        "usage": "timm.create_model(timm.model_name, pretrained=False, \
                  pretrained_cfg_overlay=timm.pretrained_cfg, **timm.kwargs), then \
                  load_state_dict(safetensors.torch.load_file(...), strict=True)",
        "note": "LayerNorm eps 1e-6 (timm's ViT default); pos_embed holds MoCo v3's fixed sin-cos embedding",
    });
    let side = a.out.with_extension("json");
    twoview_formats::write_atomic(&side, (serde_json::to_string_pretty(&meta)? + "\n").as_bytes())?;
    eprintln!(
        "export: {} tensors of {} (step {step}) → {} (timm config in {})",
        tensors.len(),
        dir.display(),
        a.out.display(),
        side.display()
    );
    Ok(ExitCode::SUCCESS)
}
