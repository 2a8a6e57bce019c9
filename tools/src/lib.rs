//! `twoview`: the command line, and its two most used commands as programs of their own
//! (`prep-shards`, `train`, as the design names them). Binaries parse, wire and report; the
//! algorithms live in the library crates (formats, pipeline, model).

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

/// Pretrain Vision Transformers on your own image folders with MoCo v3 (self-supervised: no
/// labels needed), then measure and ship the backbone.
///
/// Typical use: `prep-shards IMAGENET_ROOT --out shards` once (decode and resize every image
/// into memory-mapped shards), `train --shards shards --out runs/a` (resumable; CPU or GPU, and
/// data-parallel under torchrun or SLURM), `eval knn --checkpoint runs/a …` to measure, `export`
/// to load the backbone in timm.
#[derive(Parser)]
#[command(name = "twoview", version, about, long_about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a contact sheet of images and their two augmented views (PNG).
    AugmentPreview(augment_preview::Args),
    /// Evaluate a checkpoint's frozen backbone (k-NN or a linear probe).
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

/// `twoview SUBCOMMAND …`.
pub fn main_twoview() -> ExitCode {
    quiet_sigpipe();
    dispatch(Cli::parse().command, "twoview")
}

/// `prep-shards …` or `train …`: the same arguments, help and exit codes as `twoview NAME …`.
pub fn main_direct(name: &'static str) -> ExitCode {
    quiet_sigpipe();
    fn parse<A: clap::Args>(name: &'static str, about: &'static str) -> A {
        let cmd = A::augment_args(
            clap::Command::new(name).version(env!("CARGO_PKG_VERSION")).about(about),
        );
        A::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit())
    }
    let command = match name {
        "prep-shards" => Command::PrepShards(parse(
            name,
            "Decode and resize an image folder into memory-mapped Arrow shards (as `twoview \
             prep-shards`).",
        )),
        "train" => Command::Train(parse(
            name,
            "Pretrain a ViT with MoCo v3 on shards, resumable (as `twoview train`).",
        )),
        other => unreachable!("no direct command {other}"),
    };
    dispatch(command, name)
}

/// Behave like a Unix tool when piped into `head`: die quietly on SIGPIPE, don't panic.
fn quiet_sigpipe() {
    // SAFETY: restoring the default disposition of a signal has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

fn dispatch(command: Command, program: &str) -> ExitCode {
    let result = match command {
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
            eprintln!("{program}: error: {}", error_chain(&err));
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
