//! `twoview prep-shards ROOT --out SHARDS`: wiring and reporting around `twoview_pipeline::prep`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::ValueEnum;
use twoview_pipeline::prep::{self, PrepOptions, SplitSelection, StoreEncoding};
use twoview_pipeline::resize::{Filter, Fit};

use crate::progress::Progress;

/// Exit code when the shards were written but some inputs were skipped (listed in the manifest).
pub const EXIT_SKIPPED: u8 = 3;

#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Train,
    Val,
    All,
}

#[derive(Clone, Copy, ValueEnum)]
enum EncodingArg {
    Raw,
    Jpeg,
    Auto,
}

#[derive(Clone, Copy, ValueEnum)]
enum FilterArg {
    Bilinear,
    Bicubic,
    Lanczos3,
}

/// Decode and resize every image of ROOT into memory-mapped Arrow shards plus manifest.json.
///
/// Layouts: ROOT/{train,val}/<class>/* (ImageNet; val may be flat with --val-labels or
/// LOC_val_solution.csv), the Kaggle ROOT/ILSVRC/Data/CLS-LOC/..., or ROOT/<class>/* (one split,
/// "train"). Classes are the sorted train folder names. Inputs that cannot be decoded are skipped
/// and listed with reasons. Exit status: 0 all stored, 3 written but some inputs skipped, 1 error.
/// Interrupt it (Ctrl-C, kill) at any time and rerun the same command to finish.
#[derive(clap::Args)]
pub struct Args {
    /// Dataset root.
    root: PathBuf,
    /// Output folder for shards and manifest.json.
    #[arg(long)]
    out: PathBuf,
    /// Which splits.
    #[arg(long, value_enum, default_value = "all")]
    split: SplitArg,
    /// Labels for a flat val/ folder: LOC_val_solution.csv, or lines of path<TAB>class.
    #[arg(long)]
    val_labels: Option<PathBuf>,
    /// Resize so the shorter side is N (torchvision Resize(N)); exclusive with --max-side.
    #[arg(long, default_value_t = 256, conflicts_with = "max_side")]
    short_side: u32,
    /// Resize so the longer side is N.
    #[arg(long)]
    max_side: Option<u32>,
    /// Also grow images smaller than the target (default: store them as they are).
    #[arg(long)]
    upscale: bool,
    /// Resampling filter.
    #[arg(long, value_enum, default_value = "bilinear")]
    filter: FilterArg,
    /// raw RGB (fastest to load, largest), jpeg (re-encoded), or auto (raw up to --raw-max-bytes).
    #[arg(long, value_enum, default_value = "raw")]
    encoding: EncodingArg,
    /// JPEG quality for --encoding jpeg/auto.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// --encoding auto: images up to this many raw bytes are stored raw.
    #[arg(long, default_value_t = 256 * 256 * 3)]
    raw_max_bytes: u64,
    /// Inputs per shard file.
    #[arg(long, default_value_t = 2048)]
    rows_per_shard: usize,
    /// Rows per Arrow record batch.
    #[arg(long, default_value_t = 256)]
    batch_rows: usize,
    /// Store rows in one global random order (from this seed) instead of sorted by path.
    #[arg(long)]
    shuffle_seed: Option<u64>,
    /// Decode JPEGs at full size even when a DCT-scaled decode would still cover the target.
    #[arg(long)]
    no_dct_scaling: bool,
    /// Apply EXIF orientation (torchvision's ImageFolder does not).
    #[arg(long)]
    exif_orientation: bool,
    /// Refuse images with more pixels (Pillow's decompression-bomb limit by default).
    #[arg(long, default_value_t = twoview_pipeline::decode::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Also write K pre-augmented view pairs per train image (offline views; see docs/shards.md
    /// for the recipe-fidelity trade-off). 0 = none.
    #[arg(long, default_value_t = 0)]
    views: u32,
    /// Offline views: view side.
    #[arg(long, default_value_t = 224)]
    view_size: u32,
    /// Offline views: a recipe preset or TOML file.
    #[arg(long, default_value = "mocov3_vit")]
    view_recipe: String,
    /// Offline views: seed of their row orders and augmentation.
    #[arg(long, default_value_t = 0)]
    view_seed: u64,
    /// Offline views: rows per record batch; use the training batch size so every batch is one
    /// contiguous slice of the map.
    #[arg(long, default_value_t = 256)]
    view_batch_rows: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

fn options(args: &Args) -> PrepOptions {
    PrepOptions {
        fit: args.max_side.map_or(Fit::ShortSide(args.short_side), Fit::MaxSide),
        upscale: args.upscale,
        filter: match args.filter {
            FilterArg::Bilinear => Filter::Bilinear,
            FilterArg::Bicubic => Filter::Bicubic,
            FilterArg::Lanczos3 => Filter::Lanczos3,
        },
        encoding: match args.encoding {
            EncodingArg::Raw => StoreEncoding::Raw,
            EncodingArg::Jpeg => StoreEncoding::Jpeg,
            EncodingArg::Auto => StoreEncoding::Auto,
        },
        quality: args.quality,
        raw_max_bytes: args.raw_max_bytes,
        rows_per_shard: args.rows_per_shard.max(1),
        batch_rows: args.batch_rows.max(1),
        shuffle_seed: args.shuffle_seed,
        dct_scaling: !args.no_dct_scaling,
        apply_exif_orientation: args.exif_orientation,
        max_pixels: args.max_pixels,
    }
}

/// Scans ROOT and says what it found.
fn scan(args: &Args) -> anyhow::Result<prep::Scan> {
    let selection = match args.split {
        SplitArg::Train => SplitSelection::Train,
        SplitArg::Val => SplitSelection::Val,
        SplitArg::All => SplitSelection::All,
    };
    eprintln!("prep-shards: scanning {}", args.root.display());
    let scan = prep::scan(&args.root, selection, args.val_labels.as_deref())?;
    let counts: Vec<String> = scan.splits.iter().map(|(s, v)| format!("{s} {}", v.len())).collect();
    eprintln!(
        "prep-shards: {:?} layout, {} classes, inputs: {}{}",
        scan.layout,
        scan.classes.len(),
        counts.join(", "),
        if scan.ignored_files > 0 {
            format!(" ({} non-image files ignored)", scan.ignored_files)
        } else {
            String::new()
        }
    );
    Ok(scan)
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if let Some(t) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t.max(1))
            .build_global()
            .context("thread pool")?;
    }
    let opts = options(args);
    let scan = scan(args)?;
    crate::signals::install();
    let total: u64 = scan.splits.values().map(|v| v.len() as u64).sum();
    let mut bar = Progress::new(total, "images");
    let created_by = format!("twoview {}", env!("CARGO_PKG_VERSION"));
    let result = prep::run(&scan, &args.out, &opts, &created_by, crate::signals::flag(), |p| {
        let mut msg = format!("{} skipped", p.skipped);
        if p.resumed_shards > 0 {
            msg.push_str(&format!(", {} shards kept from an earlier run", p.resumed_shards));
        }
        bar.update(p.done, msg);
    });
    bar.finish();
    let s = result.with_context(|| format!("prep-shards into {}", args.out.display()))?;
    if args.views > 0 {
        views(args, &s, opts.rows_per_shard)?;
    }
    summary(args, &s);
    skipped(&s)
}

/// `--views K`: offline view variants of the train split (or the only split).
fn views(args: &Args, s: &prep::PrepSummary, rows_per_shard: usize) -> anyhow::Result<()> {
    let split = prep::views_source_split(s);
    let vs = prep::ViewsSettings {
        split: split.clone(),
        k: args.views,
        size: args.view_size,
        recipe: twoview_pipeline::augment::Recipe::preset_or_file(&args.view_recipe)?,
        seed: args.view_seed,
        rows_per_shard,
        batch_rows: args.view_batch_rows.max(1),
    };
    let rows = s.rows.get(&split).copied().unwrap_or(0);
    eprintln!(
        "prep-shards: writing {} offline view variants of {split} at {}px",
        args.views, args.view_size
    );
    let mut bar = Progress::new(rows * args.views as u64, "view pairs");
    let r = prep::write_views(&args.out, &vs, crate::signals::flag(), |done, _| {
        bar.update(done, String::new())
    });
    bar.finish();
    r.with_context(|| format!("offline views into {}", args.out.display()))?;
    let side = args.view_size;
    println!(
        "offline views: {} variants of {split} ({rows} rows each) at {side}x{side}",
        args.views
    );
    Ok(())
}

/// What was stored, how big and how fast.
fn summary(args: &Args, s: &prep::PrepSummary) {
    if s.already_complete {
        println!(
            "{} is already complete for these inputs and settings; nothing to do.",
            args.out.display()
        );
    }
    for (split, inputs) in &s.inputs {
        println!("{split}: {} of {inputs} inputs stored", s.rows[split]);
    }
    if s.shards_written + s.shards_resumed > 0 && !s.already_complete {
        let per_image = s.pixel_bytes as f64 / s.raw_rows.saturating_add(s.jpeg_rows).max(1) as f64;
        println!(
            "shards: {} written, {} kept from an earlier run; {:.1} MB on disk ({:.1} KB/image stored this run: {} raw, {} JPEG)",
            s.shards_written,
            s.shards_resumed,
            s.shard_bytes as f64 / 1e6,
            per_image / 1e3,
            s.raw_rows,
            s.jpeg_rows
        );
        let rate = (s.raw_rows + s.jpeg_rows + s.skipped.len() as u64) as f64 / s.seconds.max(1e-9);
        println!(
            "time: {:.1} s ({rate:.0} images/s); inputs read {:.1} MB; {} CMYK, {} PNG, {} decoded with a libjpeg warning",
            s.seconds,
            s.input_bytes as f64 / 1e6,
            s.cmyk_inputs,
            s.png_inputs,
            s.warned_inputs
        );
    }
    if s.skipped.is_empty() {
        let stored: u64 = s.rows.values().sum();
        let manifest = args.out.join("manifest.json");
        println!("all {stored} inputs stored; manifest: {}", manifest.display());
    }
}

/// The skipped inputs (the first 20) and the exit status: 3 when any was skipped.
fn skipped(s: &prep::PrepSummary) -> anyhow::Result<ExitCode> {
    if s.skipped.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let kinds: Vec<String> = s.skipped_by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!("SKIPPED {} inputs ({}), listed in the manifest:", s.skipped.len(), kinds.join(", "));
    for sk in s.skipped.iter().take(20) {
        println!("  {}: {}", sk.key, sk.reason);
    }
    if s.skipped.len() > 20 {
        println!("  … and {} more", s.skipped.len() - 20);
    }
    Ok(ExitCode::from(EXIT_SKIPPED))
}
