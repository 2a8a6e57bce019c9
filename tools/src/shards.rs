//! `twoview shards inspect|verify|show`: look at a shard folder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use rayon::prelude::*;
use twoview_formats::{Encoding, Manifest, Row, ShardSet};
use twoview_pipeline::RgbImage;
use twoview_pipeline::decode::{DecodeOptions, Decoder};

use crate::progress::Progress;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Counts, classes, sizes and settings of a shard folder.
    Inspect {
        /// The shard folder (holds manifest.json).
        shards: PathBuf,
    },
    /// Check every shard's checksum and that every row decodes. Exit 1 if anything is wrong.
    Verify {
        /// The shard folder.
        shards: PathBuf,
    },
    /// Write one stored image as PNG.
    Show {
        /// The shard folder.
        shards: PathBuf,
        /// Split to read.
        #[arg(long, default_value = "train")]
        split: String,
        /// Row index within the split.
        #[arg(long)]
        index: u64,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cmd: &Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Inspect { shards } => inspect(shards),
        Command::Verify { shards } => verify(shards),
        Command::Show { shards, split, index, out } => show(shards, split, *index, out),
    }
}

/// Decodes a stored row to RGB.
fn row_image(dec: &mut Decoder, row: &Row<'_>) -> anyhow::Result<RgbImage> {
    Ok(match row.encoding {
        Encoding::RawRgb => {
            RgbImage::try_from_vec(row.pixels.to_vec(), row.width as u32, row.height as u32)?
        }
        Encoding::Jpeg => {
            let img = dec.decode(row.pixels, row.key, &DecodeOptions::default())?.image;
            if (img.width(), img.height()) != (row.width as u32, row.height as u32) {
                bail!(
                    "{}: JPEG is {}x{}, the row says {}x{}",
                    row.key,
                    img.width(),
                    img.height(),
                    row.width,
                    row.height
                );
            }
            img
        }
    })
}

/// One split's rows, sizes, encodings and class balance.
fn describe_split(dir: &std::path::Path, m: &Manifest, name: &str) -> anyhow::Result<()> {
    let set = ShardSet::open(dir, name)?;
    let split = &m.splits[name];
    let bytes: u64 = split.shards.iter().map(|s| s.bytes).sum();
    let (mut raw, mut jpeg, mut pix) = (0u64, 0u64, 0u64);
    let mut shorts = Vec::with_capacity(set.len() as usize);
    let mut per_class = vec![0u64; m.classes.len()];
    for shard in set.shards() {
        for r in shard.rows() {
            match r.encoding {
                Encoding::RawRgb => raw += 1,
                Encoding::Jpeg => jpeg += 1,
            }
            pix += r.pixels.len() as u64;
            shorts.push(r.width.min(r.height));
            if let Some(c) = per_class.get_mut(r.label.max(0) as usize).filter(|_| r.label >= 0) {
                *c += 1;
            }
        }
    }
    shorts.sort_unstable();
    let q =
        |f: f64| shorts.get(((shorts.len().max(1) - 1) as f64 * f) as usize).copied().unwrap_or(0);
    let (cmin, cmax) = (
        per_class.iter().min().copied().unwrap_or(0),
        per_class.iter().max().copied().unwrap_or(0),
    );
    println!(
        "{name}: {} rows of {} inputs in {} shards, {:.1} MB ({:.1} KB/image); {raw} raw, {jpeg} JPEG",
        split.rows,
        split.inputs,
        split.shards.len(),
        bytes as f64 / 1e6,
        pix as f64 / set.len().max(1) as f64 / 1e3
    );
    println!(
        "  shorter side: min {} / median {} / max {}; rows per class: {cmin}..{cmax}",
        q(0.0),
        q(0.5),
        q(1.0)
    );
    Ok(())
}

fn inspect(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let m = Manifest::load(dir)?;
    println!("{}  (format {}, written by {})", dir.display(), m.format_version, m.created_by);
    let preview: Vec<&str> = m.classes.iter().take(5).map(String::as_str).collect();
    println!(
        "classes: {} ({}{})",
        m.classes.len(),
        preview.join(", "),
        if m.classes.len() > 5 { ", …" } else { "" }
    );
    for name in m.splits.keys() {
        describe_split(dir, &m, name)?;
    }
    println!("skipped inputs: {}", m.skipped.len());
    for s in m.skipped.iter().take(10) {
        println!("  {}/{}: {}", s.split, s.key, s.reason);
    }
    println!("settings: {}", serde_json::to_string_pretty(&m.settings)?);
    Ok(ExitCode::SUCCESS)
}

fn verify(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let m = Manifest::load(dir)?;
    let mut problems = Vec::new();
    let mut rows_checked = 0u64;
    for name in m.splits.keys() {
        let set = match ShardSet::open(dir, name) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{e}"));
                continue;
            }
        };
        if let Err(e) = set.verify_checksums() {
            problems.push(format!("{e}"));
        }
        let mut bar = Progress::new(set.len(), "rows");
        let mut done = 0u64;
        for shard in set.shards() {
            let errors: Vec<String> = (0..shard.num_rows())
                .into_par_iter()
                .map_init(Decoder::new, |dec, i| {
                    let row = shard.row(i).map_err(|e| e.to_string())?;
                    row_image(dec, &row)
                        .map(|_| ())
                        .map_err(|e| format!("{}, row {i}: {e:#}", shard.path().display()))
                })
                .filter_map(Result::err)
                .collect();
            problems.extend(errors);
            done += shard.num_rows();
            bar.update(done, format!("{} problems", problems.len()));
        }
        bar.finish();
        rows_checked += set.len();
    }
    if problems.is_empty() {
        println!(
            "ok: {} rows in {} splits; every checksum matches and every row decodes",
            rows_checked,
            m.splits.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("FAILED: {} problems", problems.len());
        for p in &problems {
            println!("  {p}");
        }
        Ok(ExitCode::FAILURE)
    }
}

fn show(
    dir: &std::path::Path,
    split: &str,
    index: u64,
    out: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let set = ShardSet::open(dir, split)?;
    let row = set.row(index)?;
    let img = row_image(&mut Decoder::new(), &row)?;
    img.save_png(out).with_context(|| format!("writing {}", out.display()))?;
    let class = usize::try_from(row.label)
        .ok()
        .and_then(|l| set.manifest().classes.get(l))
        .map_or("-", String::as_str);
    println!(
        "{split}[{index}] = {} (label {} {class}), {}x{} {:?} -> {}",
        row.key,
        row.label,
        row.width,
        row.height,
        row.encoding,
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
