//! `twoview`: the command line. Binaries parse, wire and report; the algorithms live in the
//! library crates (formats, pipeline, model).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod augment_preview;
mod bench;
mod eval;
mod features;
mod info;
mod plot;
mod prep_shards;
mod progress;
mod shards;
mod signals;
mod train;

/// Self-supervised ViT pretraining (MoCo v3) from memory-mapped Arrow shards.
#[derive(Parser)]
#[command(name = "twoview", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a contact sheet of images and their two augmented views (PNG).
    AugmentPreview(augment_preview::Args),
    /// Evaluate a checkpoint's frozen backbone (k-NN).
    #[command(subcommand)]
    Eval(eval::Command),
    /// Write a checkpoint's backbone under timm's names (safetensors + timm config JSON).
    Export(eval::ExportArgs),
    /// Throughput benchmarks (see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(bench::Command),
    /// Print the libtorch this binary runs against, its devices and thread counts.
    Info(info::Args),
    /// Draw a run's curves (metrics.jsonl) into a PNG.
    Plot(plot::Args),
    /// Decode and resize an image folder into memory-mapped Arrow shards (see --help).
    PrepShards(prep_shards::Args),
    /// Inspect, verify or show a shard folder.
    #[command(subcommand)]
    Shards(shards::Command),
    /// Pretrain a ViT with MoCo v3 on shards (resumable; see --help).
    Train(train::Args),
}

fn main() -> ExitCode {
    // Behave like a Unix tool when piped into `head`: die quietly on SIGPIPE, don't panic.
    // SAFETY: restoring the default disposition of a signal has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let result = match cli.command {
        Command::AugmentPreview(args) => augment_preview::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench(cmd) => bench::run(&cmd).map(|()| ExitCode::SUCCESS),
        Command::Eval(cmd) => eval::run(&cmd),
        Command::Export(args) => eval::export(&args),
        Command::Info(args) => info::run(&args),
        Command::Plot(args) => plot::run(&args),
        Command::PrepShards(args) => prep_shards::run(&args),
        Command::Shards(cmd) => shards::run(&cmd),
        Command::Train(args) => train::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("twoview: error: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, leaving out a cause whose text the message before
/// it already ends with (our error types print their source in their own message, so anyhow's
/// `{:#}` would say "No such file or directory" twice).
fn error_chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
