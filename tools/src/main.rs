//! `twoview`: the command line. Binaries parse, wire and report; the algorithms live in the
//! library crates (formats, pipeline, model).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod info;

/// Self-supervised ViT pretraining (MoCo v3) from memory-mapped Arrow shards.
#[derive(Parser)]
#[command(name = "twoview", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the libtorch this binary runs against, its devices and thread counts.
    Info(info::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(args) => info::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("twoview: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
