//! `prep_shards`: the CLI's `prep-shards` for Python. The prep runs on its own thread; the
//! calling thread reports progress to a Python callback and answers Ctrl-C by stopping the prep
//! between record batches (finished shards stay; the same call resumes).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;
use pyo3::prelude::*;
use twoview_pipeline::prep::{self, PrepOptions, PrepSummary, SplitSelection, StoreEncoding};
use twoview_pipeline::resize::{Filter, Fit};

use crate::augment::Recipe;
use crate::{PrepError, to_py};

/// What the prep thread last reported: (stage, done, total, skipped).
type Report = Arc<Mutex<(&'static str, u64, u64, u64)>>;

fn parse<T>(what: &str, value: &str, known: &[(&str, T)]) -> PyResult<T>
where
    T: Copy,
{
    known.iter().find(|k| k.0 == value).map(|k| k.1).ok_or_else(|| {
        let names: Vec<&str> = known.iter().map(|k| k.0).collect();
        PrepError::new_err(format!("{what}={value:?}: use one of {}", names.join(", ")))
    })
}

/// Offline views to write after the shards.
struct Views {
    k: u32,
    size: u32,
    recipe: twoview_pipeline::augment::Recipe,
    seed: u64,
    batch_rows: usize,
}

/// Decodes and resizes every image of `root` into shards in `out` (the CLI's prep-shards);
/// returns the summary as JSON. See `twoview.prep_shards` for the arguments.
#[pyfunction]
#[pyo3(signature = (root, out, *, split = "all", val_labels = None, short_side = 256,
    max_side = None, upscale = false, filter = "bilinear", encoding = "raw", quality = 90,
    raw_max_bytes = 196_608, rows_per_shard = 2048, batch_rows = 256, shuffle_seed = None,
    dct_scaling = true, exif_orientation = false,
    max_pixels = twoview_pipeline::decode::DEFAULT_MAX_PIXELS, views = 0, view_size = 224,
    view_recipe = None, view_seed = 0, view_batch_rows = 256, threads = None, progress = None))]
#[allow(clippy::too_many_arguments)]
pub fn prep_shards(
    py: Python<'_>,
    root: PathBuf,
    out: PathBuf,
    split: &str,
    val_labels: Option<PathBuf>,
    short_side: u32,
    max_side: Option<u32>,
    upscale: bool,
    filter: &str,
    encoding: &str,
    quality: u8,
    raw_max_bytes: u64,
    rows_per_shard: usize,
    batch_rows: usize,
    shuffle_seed: Option<u64>,
    dct_scaling: bool,
    exif_orientation: bool,
    max_pixels: u64,
    views: u32,
    view_size: u32,
    view_recipe: Option<Recipe>,
    view_seed: u64,
    view_batch_rows: usize,
    threads: Option<usize>,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    if !(1..=100).contains(&quality) || rows_per_shard == 0 || batch_rows == 0 {
        return Err(PrepError::new_err(format!(
            "quality {quality} must be in 1..=100, rows_per_shard {rows_per_shard} and \
             batch_rows {batch_rows} > 0"
        )));
    }
    let selection = parse(
        "split",
        split,
        &[
            ("train", SplitSelection::Train),
            ("val", SplitSelection::Val),
            ("all", SplitSelection::All),
        ],
    )?;
    let opts = PrepOptions {
        fit: max_side.map_or(Fit::ShortSide(short_side), Fit::MaxSide),
        upscale,
        filter: parse(
            "filter",
            filter,
            &[
                ("bilinear", Filter::Bilinear),
                ("bicubic", Filter::Bicubic),
                ("lanczos3", Filter::Lanczos3),
            ],
        )?,
        encoding: parse(
            "encoding",
            encoding,
            &[
                ("raw", StoreEncoding::Raw),
                ("jpeg", StoreEncoding::Jpeg),
                ("auto", StoreEncoding::Auto),
            ],
        )?,
        quality,
        raw_max_bytes,
        rows_per_shard,
        batch_rows,
        shuffle_seed,
        dct_scaling,
        apply_exif_orientation: exif_orientation,
        max_pixels,
    };
    let views = (views > 0).then(|| Views {
        k: views,
        size: view_size,
        recipe: view_recipe.map_or_else(twoview_pipeline::augment::Recipe::mocov3_vit, |r| r.inner),
        seed: view_seed,
        batch_rows: view_batch_rows.max(1),
    });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .thread_name(|i| format!("twoview-prep{i}"))
        .build()
        .map_err(|e| PrepError::new_err(format!("thread pool: {e}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    let report: Report = Arc::new(Mutex::new(("scanning", 0, 0, 0)));
    let (tx, rx) = crossbeam_channel::bounded(1);
    let worker = {
        let (stop, report) = (stop.clone(), report.clone());
        std::thread::Builder::new()
            .name("twoview-prep".into())
            .spawn(move || {
                let r = pool.install(|| {
                    run(&root, &out, selection, val_labels, &opts, views, &stop, &report)
                });
                let _ = tx.send(r);
            })
            .map_err(|e| PrepError::new_err(format!("cannot start the prep thread: {e}")))?
    };
    let result = wait(py, &rx, &stop, &report, progress.as_ref());
    py.detach(|| {
        let _ = worker.join();
    });
    let summary = result?.map_err(to_py)?;
    Ok(serde_json::to_string(&summary).expect("a summary serialises"))
}

/// Waits for the prep thread, calling `progress(stage, done, total, skipped)` every 100 ms and
/// stopping the prep on a Python signal (whose exception is returned once it has stopped).
fn wait(
    py: Python<'_>,
    rx: &crossbeam_channel::Receiver<Result<PrepSummary, twoview_pipeline::Error>>,
    stop: &AtomicBool,
    report: &Report,
    progress: Option<&Py<PyAny>>,
) -> PyResult<Result<PrepSummary, twoview_pipeline::Error>> {
    loop {
        let got = py.detach(|| rx.recv_timeout(Duration::from_millis(100)));
        let r = *report.lock().expect("not poisoned");
        let tell = |py| progress.map_or(Ok(()), |f| f.call1(py, r).map(drop));
        match got {
            Ok(result) => {
                tell(py)?;
                return Ok(result);
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(PrepError::new_err("the prep thread died (a bug: please report it)"));
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Err(e) = py.check_signals().and_then(|()| tell(py)) {
            stop.store(true, Ordering::SeqCst);
            let _ = py.detach(|| rx.recv());
            return Err(e);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    root: &std::path::Path,
    out: &std::path::Path,
    selection: SplitSelection,
    val_labels: Option<PathBuf>,
    opts: &PrepOptions,
    views: Option<Views>,
    stop: &AtomicBool,
    report: &Report,
) -> Result<PrepSummary, twoview_pipeline::Error> {
    let scan = prep::scan(root, selection, val_labels.as_deref())?;
    let total: u64 = scan.splits.values().map(|v| v.len() as u64).sum();
    *report.lock().expect("not poisoned") = ("images", 0, total, 0);
    let created_by = format!("twoview {} (python)", env!("CARGO_PKG_VERSION"));
    let summary = prep::run(&scan, out, opts, &created_by, stop, |p| {
        *report.lock().expect("not poisoned") = ("images", p.done, p.total, p.skipped);
    })?;
    if let Some(v) = views {
        let split = prep::views_source_split(&summary);
        let rows = summary.rows.get(&split).copied().unwrap_or(0);
        let vs = prep::ViewsSettings {
            split,
            k: v.k,
            size: v.size,
            recipe: v.recipe,
            seed: v.seed,
            rows_per_shard: opts.rows_per_shard,
            batch_rows: v.batch_rows,
        };
        *report.lock().expect("not poisoned") = ("view pairs", 0, rows * v.k as u64, 0);
        prep::write_views(out, &vs, stop, |done, _| {
            *report.lock().expect("not poisoned") = ("view pairs", done, rows * v.k as u64, 0);
        })?;
    }
    Ok(summary)
}
