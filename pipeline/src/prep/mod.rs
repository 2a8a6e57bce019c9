//! prep-shards: image folders → Arrow shards (`twoview_formats`), in parallel, streaming,
//! deterministic and resumable.
//!
//! Each split's inputs are ordered (sorted by key, or one global permutation from a seed) and
//! cut into shards of a fixed number of *inputs*, so which file lands in which shard never
//! depends on timing or thread count, and every shard is an independent unit of work. A shard
//! is written to a temp file, fsynced and renamed (`ShardWriter`); then a small record of it
//! (`.prep/<shard>.json`: rows, size, checksum, skipped inputs) is written atomically. A rerun of
//! the same command keeps every shard whose record and file agree and redoes the rest; the
//! manifest is written last. Undecodable inputs are skipped and listed, never fatal.

mod scan;
mod views;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use twoview_formats::{
    Encoding, Manifest, Row, ShardInfo, ShardWriter, Skipped, SplitManifest, write_atomic,
};
use xxhash_rust::xxh3::Xxh3;

pub use scan::{Input, Layout, Scan, SplitSelection, is_image_name, scan};
pub use views::{ViewsSettings, views_source_split, views_split, write_views};

use crate::Error;
use crate::decode::{DecodeFailure, DecodeOptions, Decoder, JpegEncoder};
use crate::resize::{Filter, Fit, Resizer};

/// How stored images are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreEncoding {
    /// Raw RGB HWC u8: no decode at load time, biggest files.
    Raw,
    /// Re-encoded JPEG at the given quality: ~10× smaller, one decode per sample at load time.
    Jpeg,
    /// Raw when the raw image is at most `raw_max_bytes`, else JPEG (FFCV's "smart" mode).
    Auto,
}

/// Everything that decides the bytes of the shards (part of the resume fingerprint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrepOptions {
    /// Storage size.
    pub fit: Fit,
    /// Grow images smaller than the target (off: they are stored as they are).
    pub upscale: bool,
    /// Resampling filter.
    pub filter: Filter,
    /// How to store pixels.
    pub encoding: StoreEncoding,
    /// JPEG quality for `jpeg`/`auto`.
    pub quality: u8,
    /// `auto`: largest raw image (bytes) stored raw.
    pub raw_max_bytes: u64,
    /// Inputs per shard (the last shard of a split may have fewer; skipped inputs leave gaps).
    pub rows_per_shard: usize,
    /// Rows per Arrow record batch.
    pub batch_rows: usize,
    /// `Some(seed)`: one global permutation of each split's inputs instead of sorted order.
    pub shuffle_seed: Option<u64>,
    /// Let libjpeg-turbo decode at a reduced DCT scale when the result still covers the target.
    pub dct_scaling: bool,
    /// Rotate by EXIF orientation (ImageFolder does not).
    pub apply_exif_orientation: bool,
    /// Refuse images with more pixels (decompression bombs).
    pub max_pixels: u64,
}

impl Default for PrepOptions {
    fn default() -> Self {
        Self {
            fit: Fit::ShortSide(256),
            upscale: false,
            filter: Filter::Bilinear,
            encoding: StoreEncoding::Raw,
            quality: 90,
            raw_max_bytes: 256 * 256 * 3,
            rows_per_shard: 2048,
            batch_rows: 256,
            shuffle_seed: None,
            dct_scaling: true,
            apply_exif_orientation: false,
            max_pixels: crate::decode::DEFAULT_MAX_PIXELS,
        }
    }
}

/// Progress, reported after every record batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Inputs handled so far (stored, skipped, or found done by a resume).
    pub done: u64,
    /// Inputs in all selected splits.
    pub total: u64,
    /// Inputs skipped so far.
    pub skipped: u64,
    /// Shards already complete from an earlier run.
    pub resumed_shards: u64,
}

/// What a prep did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PrepSummary {
    /// Inputs per split.
    pub inputs: BTreeMap<String, u64>,
    /// Rows stored per split.
    pub rows: BTreeMap<String, u64>,
    /// Skipped inputs by reason kind.
    pub skipped_by_kind: BTreeMap<String, u64>,
    /// Every skipped input.
    pub skipped: Vec<Skipped>,
    /// Shards written by this run / kept from an earlier one.
    pub shards_written: u64,
    /// Shards found complete and kept.
    pub shards_resumed: u64,
    /// Bytes of all shard files.
    pub shard_bytes: u64,
    /// Bytes of the pixels column (what the images cost to store).
    pub pixel_bytes: u64,
    /// Bytes of the input files read.
    pub input_bytes: u64,
    /// Rows stored raw / as JPEG (this run's shards only).
    pub raw_rows: u64,
    /// Rows stored as JPEG (this run's shards only).
    pub jpeg_rows: u64,
    /// Inputs that were CMYK/YCCK JPEGs, PNGs, or decoded with a libjpeg warning (this run).
    pub cmyk_inputs: u64,
    /// PNG inputs (whatever their name).
    pub png_inputs: u64,
    /// JPEGs decoded with a warning that did not stop them (this run).
    pub warned_inputs: u64,
    /// Wall time of this run.
    pub seconds: f64,
    /// True when the folder was already complete and nothing was done.
    pub already_complete: bool,
}

/// The record of one finished shard, kept in `.prep/` until the manifest is written.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ShardRecord {
    info: ShardInfo,
    skipped: Vec<Skipped>,
    pixel_bytes: u64,
    inputs: u64,
}

/// One processed input, ready to be written.
struct Encoded {
    index: usize,
    encoding: Encoding,
    width: u16,
    height: u16,
    bytes: Vec<u8>,
    cmyk: bool,
    png: bool,
    warned: bool,
}

/// Per-thread tools.
struct Worker {
    decoder: Decoder,
    resizer: Resizer,
    encoder: JpegEncoder,
}

impl Worker {
    fn new() -> Self {
        Self { decoder: Decoder::new(), resizer: Resizer::new(), encoder: JpegEncoder::new() }
    }

    fn process(
        &mut self,
        input: &Input,
        index: usize,
        opts: &PrepOptions,
    ) -> Result<Encoded, (DecodeFailure, String)> {
        let bytes = std::fs::read(&input.path)
            .map_err(|e| (DecodeFailure::Corrupt, format!("cannot read: {e}")))?;
        let dopts = DecodeOptions {
            max_pixels: opts.max_pixels,
            apply_exif_orientation: opts.apply_exif_orientation,
            dct_scale_floor: opts.dct_scaling.then(|| opts.fit.dct_floor()),
        };
        let decoded = self.decoder.decode(&bytes, &input.key, &dopts).map_err(|e| match e {
            Error::Decode { kind, reason, .. } => (kind, reason),
            other => (DecodeFailure::Corrupt, other.to_string()),
        })?;
        let (cmyk, png, warned) =
            (decoded.cmyk, decoded.format == crate::decode::Format::Png, decoded.warning.is_some());
        let img = self
            .resizer
            .fit(decoded.image, decoded.full_size, opts.fit, opts.upscale, opts.filter)
            .map_err(|e| (DecodeFailure::Corrupt, e.to_string()))?;
        let (w, h) = (img.width(), img.height());
        if w > u16::MAX as u32 || h > u16::MAX as u32 {
            return Err((
                DecodeFailure::TooLarge,
                format!("stored size {w}x{h} exceeds 65535 (use --short-side/--max-side)"),
            ));
        }
        let raw_size = w as u64 * h as u64 * 3;
        let jpeg = match opts.encoding {
            StoreEncoding::Raw => false,
            StoreEncoding::Jpeg => true,
            StoreEncoding::Auto => raw_size > opts.raw_max_bytes,
        };
        let (encoding, bytes) = if jpeg {
            let mut out = Vec::new();
            self.encoder
                .encode(img.view(), opts.quality, &mut out)
                .map_err(|e| (DecodeFailure::Corrupt, e.to_string()))?;
            (Encoding::Jpeg, out)
        } else {
            (Encoding::RawRgb, img.into_vec())
        };
        Ok(Encoded { index, encoding, width: w as u16, height: h as u16, bytes, cmyk, png, warned })
    }
}

/// Shard file name: `train-00003-of-00626.arrow`.
pub fn shard_name(split: &str, index: usize, count: usize) -> String {
    format!("{split}-{index:05}-of-{count:05}.arrow")
}

/// Deterministic permutation of `0..n` from `seed` (Fisher–Yates over xoshiro256++).
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = crate::rng::Rng::for_stream(crate::rng::StreamKey {
        seed,
        epoch: u64::MAX,
        sample: 0,
        view: 0,
    });
    let mut p: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut p);
    p
}

/// Hash of the settings and the input list (keys, sizes, labels): what a resume must match.
fn fingerprint(scan: &Scan, opts: &PrepOptions) -> String {
    let mut h = Xxh3::new();
    h.update(serde_json::to_string(opts).expect("options serialise").as_bytes());
    h.update(serde_json::to_string(&scan.classes).expect("classes serialise").as_bytes());
    for (split, inputs) in &scan.splits {
        h.update(split.as_bytes());
        for i in inputs {
            h.update(i.key.as_bytes());
            h.update(&i.bytes.to_le_bytes());
            h.update(&i.label.to_le_bytes());
        }
    }
    format!("xxh3:{:016x}", h.digest())
}

const STATE_DIR: &str = ".prep";

/// Runs a prep of `scan` into `out` (created if needed). `progress` is called from the
/// coordinating thread after every record batch; `stop` is polled between batches (set it from
/// a signal handler to stop cleanly: finished shards stay, the current one is abandoned).
pub fn run(
    scan: &Scan,
    out: &Path,
    opts: &PrepOptions,
    created_by: &str,
    stop: &AtomicBool,
    mut progress: impl FnMut(&Progress),
) -> Result<PrepSummary, Error> {
    let start = Instant::now();
    assert!(
        opts.rows_per_shard > 0 && opts.batch_rows > 0,
        "rows_per_shard and batch_rows must be positive"
    );
    let out_err = |reason: String| Error::Output { path: out.to_owned(), reason };
    std::fs::create_dir_all(out.join(STATE_DIR))
        .map_err(|source| Error::Io { path: out.to_owned(), source })?;
    let fp = fingerprint(scan, opts);
    let settings = serde_json::json!({
        "source_root": scan.root.display().to_string(),
        "layout": scan.layout,
        "val_labels_file": scan.val_labels_file.as_ref().map(|p| p.display().to_string()),
        "options": opts,
        "input_fingerprint": fp,
    });

    // A finished folder: same fingerprint → nothing to do; different → refuse.
    if Manifest::path_in(out).exists() {
        let m = Manifest::load(out)?;
        if m.settings.get("input_fingerprint").and_then(|v| v.as_str()) == Some(fp.as_str()) {
            let mut s = summary_from_manifest(&m);
            s.already_complete = true;
            s.seconds = start.elapsed().as_secs_f64();
            return Ok(s);
        }
        return Err(out_err(
            "holds shards of a different prep (other inputs or settings); remove it or choose another --out".into(),
        ));
    }
    let plan_path = out.join(STATE_DIR).join("plan.json");
    match std::fs::read_to_string(&plan_path) {
        Ok(text) if text.trim() != fp => {
            return Err(out_err(format!(
                "holds an unfinished prep of other inputs or settings ({}); rerun that command to finish it, \
                 or remove the folder",
                plan_path.display()
            )));
        }
        Ok(_) => {}
        Err(_) => write_atomic(&plan_path, fp.as_bytes())?,
    }
    // Temp files of an interrupted run are garbage by construction.
    for e in std::fs::read_dir(out)
        .map_err(|source| Error::Io { path: out.to_owned(), source })?
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with('.') && n.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }

    let total: u64 = scan.splits.values().map(|v| v.len() as u64).sum();
    let mut prog = Progress { total, ..Default::default() };
    let mut summary = PrepSummary::default();
    let mut manifest = Manifest::new(created_by, scan.classes.clone(), settings);
    progress(&prog);

    for (split, inputs) in &scan.splits {
        let order: Vec<usize> = match opts.shuffle_seed {
            Some(seed) => permutation(inputs.len(), seed),
            None => (0..inputs.len()).collect(),
        };
        let count = order.len().div_ceil(opts.rows_per_shard).max(1);
        let mut split_manifest =
            SplitManifest { inputs: inputs.len() as u64, ..Default::default() };
        for (s, chunk) in order.chunks(opts.rows_per_shard).enumerate() {
            let file = shard_name(split, s, count);
            let record_path = out.join(STATE_DIR).join(format!("{file}.json"));
            let record = match load_record(&record_path, &out.join(&file)) {
                Some(r) => {
                    prog.resumed_shards += 1;
                    prog.done += chunk.len() as u64;
                    prog.skipped += r.skipped.len() as u64;
                    summary.shards_resumed += 1;
                    r
                }
                None => {
                    let r = write_shard(
                        split,
                        inputs,
                        chunk,
                        &out.join(&file),
                        opts,
                        stop,
                        &mut summary,
                        &mut prog,
                        &mut progress,
                    )?;
                    write_atomic(
                        &record_path,
                        serde_json::to_string(&r).expect("record serialises").as_bytes(),
                    )?;
                    summary.shards_written += 1;
                    r
                }
            };
            progress(&prog);
            split_manifest.rows += record.info.rows;
            summary.shard_bytes += record.info.bytes;
            summary.pixel_bytes += record.pixel_bytes;
            manifest.skipped.extend(record.skipped.iter().cloned());
            split_manifest.shards.push(record.info);
        }
        summary.inputs.insert(split.clone(), split_manifest.inputs);
        summary.rows.insert(split.clone(), split_manifest.rows);
        manifest.splits.insert(split.clone(), split_manifest);
    }
    summary.skipped = manifest.skipped.clone();
    summary.skipped_by_kind = count_kinds(&summary.skipped);
    manifest.save(out)?;
    let _ = std::fs::remove_dir_all(out.join(STATE_DIR));
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// A shard's record when both it and the shard file are there and agree in size.
fn load_record(record_path: &Path, shard_path: &Path) -> Option<ShardRecord> {
    let r: ShardRecord = serde_json::from_str(&std::fs::read_to_string(record_path).ok()?).ok()?;
    let size = std::fs::metadata(shard_path).ok()?.len();
    (size == r.info.bytes).then_some(r)
}

fn count_kinds(skipped: &[Skipped]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for s in skipped {
        let kind = s.reason.split_once(':').map_or("other", |(k, _)| k).to_owned();
        *m.entry(kind).or_insert(0) += 1;
    }
    m
}

fn summary_from_manifest(m: &Manifest) -> PrepSummary {
    let mut s = PrepSummary::default();
    for (name, split) in &m.splits {
        s.inputs.insert(name.clone(), split.inputs);
        s.rows.insert(name.clone(), split.rows);
        s.shard_bytes += split.shards.iter().map(|x| x.bytes).sum::<u64>();
        s.shards_resumed += split.shards.len() as u64;
    }
    s.skipped = m.skipped.clone();
    s.skipped_by_kind = count_kinds(&s.skipped);
    s
}

/// Processes the inputs `chunk` (indices into `inputs`) into one shard at `path`.
/// Batches are decoded in parallel and written in order by a writer thread, one batch behind.
#[allow(clippy::too_many_arguments)]
fn write_shard(
    split: &str,
    inputs: &[Input],
    chunk: &[usize],
    path: &Path,
    opts: &PrepOptions,
    stop: &AtomicBool,
    summary: &mut PrepSummary,
    prog: &mut Progress,
    progress: &mut impl FnMut(&Progress),
) -> Result<ShardRecord, Error> {
    let (tx, rx) =
        crossbeam_channel::bounded::<Vec<Result<Encoded, (usize, DecodeFailure, String)>>>(1);
    let abandon = AtomicBool::new(false);
    let abandon = &abandon;
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<ShardRecord, Error> {
            let mut w = ShardWriter::create(path, opts.batch_rows)?;
            let (mut skipped, mut pixel_bytes) = (Vec::new(), 0u64);
            for batch in rx {
                for item in batch {
                    match item {
                        Ok(e) => {
                            let input = &inputs[e.index];
                            pixel_bytes += e.bytes.len() as u64;
                            w.push(&Row {
                                key: &input.key,
                                label: input.label,
                                height: e.height,
                                width: e.width,
                                encoding: e.encoding,
                                pixels: &e.bytes,
                            })?;
                        }
                        Err((index, kind, reason)) => skipped.push(Skipped {
                            split: split.to_owned(),
                            key: inputs[index].key.clone(),
                            reason: format!("{}: {reason}", kind.name()),
                        }),
                    }
                }
            }
            if abandon.load(Ordering::Relaxed) {
                return Err(Error::Interrupted); // dropping `w` removes the temp file
            }
            let info = w.finish()?;
            Ok(ShardRecord { info, skipped, pixel_bytes, inputs: chunk.len() as u64 })
        });

        let mut stopped = false;
        for batch in chunk.chunks(opts.batch_rows) {
            if stop.load(Ordering::Relaxed) {
                stopped = true;
                break;
            }
            let results: Vec<_> = batch
                .par_iter()
                .map_init(Worker::new, |w, &i| {
                    w.process(&inputs[i], i, opts).map_err(|(k, r)| (i, k, r))
                })
                .collect();
            for r in &results {
                match r {
                    Ok(e) => {
                        summary.input_bytes += inputs[e.index].bytes;
                        summary.raw_rows += (e.encoding == Encoding::RawRgb) as u64;
                        summary.jpeg_rows += (e.encoding == Encoding::Jpeg) as u64;
                        summary.cmyk_inputs += e.cmyk as u64;
                        summary.png_inputs += e.png as u64;
                        summary.warned_inputs += e.warned as u64;
                    }
                    Err(_) => prog.skipped += 1,
                }
            }
            let n = results.len() as u64;
            if tx.send(results).is_err() {
                break; // the writer failed; its error is returned below
            }
            prog.done += n;
            progress(prog);
        }
        abandon.store(stopped, Ordering::Relaxed);
        drop(tx);
        writer.join().expect("writer thread panicked")
    })
}

#[cfg(test)]
mod tests;
