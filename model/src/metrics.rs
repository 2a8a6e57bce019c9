//! RUN_DIR/metrics.jsonl: one JSON object per line, one [`Record`] type for the trainer that
//! writes it and `twoview plot` that reads it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// One logged training step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    /// Steps taken (this record is after step `step`).
    pub step: u64,
    /// Fractional epoch: step / steps per epoch.
    pub epoch: f64,
    pub loss: f64,
    pub lr: f64,
    pub momentum: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// First trained layer's gradient norm.
    pub grad_norm_first: f64,
    /// Images per second since the previous record.
    pub img_per_s: f64,
    /// Fraction of that time spent waiting for the data feed.
    pub data_wait: f64,
    /// The first-layer gradient norm was over `spike_factor` × its running median.
    pub spike: bool,
    /// Shard rows replaced so far (`on_bad_row = "replace"`).
    #[serde(default)]
    pub replaced_rows: u64,
    /// Seconds since this process started training.
    pub elapsed_s: f64,
}

/// A k-NN evaluation on the val split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnnRecord {
    pub step: u64,
    /// Top-1 and top-5 accuracy in percent.
    pub top1: f64,
    pub top5: f64,
    pub k: i64,
    pub val_images: i64,
    pub train_images: usize,
}

/// One line of metrics.jsonl, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Train(TrainRecord),
    Knn(KnnRecord),
    /// The loss of step `step` was not finite; the run stopped without applying it.
    NonFinite {
        step: u64,
        /// `NaN`, `inf` or `-inf` (JSON has no such numbers).
        loss: String,
    },
    /// A kind written by a newer twoview: kept in the file, skipped by readers.
    #[serde(other)]
    Other,
}

impl Record {
    /// The step a record belongs to (`None` for unknown kinds).
    pub fn step(&self) -> Option<u64> {
        match self {
            Record::Train(r) => Some(r.step),
            Record::Knn(r) => Some(r.step),
            Record::NonFinite { step, .. } => Some(*step),
            Record::Other => None,
        }
    }
}

/// Reads every record of `path`; a line that is not a record is an error naming the line.
pub fn read(path: &Path) -> Result<Vec<Record>, Error> {
    let text = fs::read_to_string(path).map_err(Error::file("cannot read", path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::Metrics {
                path: path.to_owned(),
                line: i + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

/// metrics.jsonl open for appending.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: fs::File,
}

impl MetricsLog {
    /// Opens `path` for appending, first dropping (atomically: temp file, fsync, rename) the
    /// records after step `keep_until`: a resumed run logs the steps after its checkpoint
    /// again. Lines this build cannot read are kept.
    pub fn open(path: &Path, keep_until: u64) -> Result<Self, Error> {
        if let Ok(text) = fs::read_to_string(path) {
            let kept: String = text
                .lines()
                .filter(|l| {
                    let step = serde_json::from_str::<Record>(l).ok().and_then(|r| r.step());
                    step.is_none_or(|s| s <= keep_until)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            write_atomic(path, kept.as_bytes())?;
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(Error::file("cannot open", path))?;
        Ok(Self { path: path.to_owned(), file })
    }

    /// Appends one record and flushes it.
    pub fn write(&mut self, r: &Record) -> Result<(), Error> {
        let line = serde_json::to_string(r).expect("records serialise");
        writeln!(self.file, "{line}")
            .and_then(|()| self.file.flush())
            .map_err(Error::file("cannot write", &self.path))
    }
}

/// Writes `bytes` to `path` through a temporary beside it, fsynced, then renamed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().map_err(Error::file("cannot write", &tmp))?;
    fs::rename(&tmp, path).map_err(Error::file("cannot rename into", path))
}

#[cfg(test)]
mod tests;
