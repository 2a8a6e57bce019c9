//! Errors of the model crate. Every message names what it is about: the configuration key and
//! where it was given, the checkpoint file, the tensor, the device string.

use std::io;
use std::path::PathBuf;

/// What can go wrong outside the model math (which is infallible by design).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A device string that is neither `cpu` nor `cuda[:N]`.
    #[error("unknown device {given:?}: expected cpu, cuda or cuda:N")]
    UnknownDevice { given: String },
    /// A CUDA device was asked for on a machine or libtorch build without it.
    #[error("{given}: CUDA is not available: {reason}; or run with --device cpu")]
    CudaUnavailable { given: String, reason: String },
    /// A CUDA device index past the devices present.
    #[error("{given}: only {count} CUDA device(s) present")]
    NoSuchCudaDevice { given: String, count: usize },
    /// A configuration that cannot be used: `origin` says who gave it (`--config run.toml`,
    /// `--set base_lr=x`, `--preset`, the run's saved configuration), `key` which key.
    #[error("{origin}: {}{message}", key.as_ref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
    Config { origin: String, key: Option<String>, message: String },
    /// A checkpoint (or run) file that cannot be read, written or parsed.
    #[error("{what} {}: {source}", path.display())]
    File {
        /// What was being done: `cannot write`, `cannot read`, `bad JSON in` …
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A checkpoint whose contents do not fit this model or this version of twoview.
    #[error("{}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    /// A tensor of a checkpoint (or an init file) that is missing or has another shape.
    #[error("{}: tensor {tensor}: {message}", path.display())]
    Restore { path: PathBuf, tensor: String, message: String },
    /// `--resume` refused: another configuration, other shards, another recipe.
    #[error("--resume: {0}")]
    Resume(String),
    /// A periodic or final checkpoint could not be written; the run stopped, and the last
    /// complete checkpoint (if any) is intact.
    #[error(
        "checkpoint of step {step} could not be written ({source}){}; the last good checkpoint \
         is {}; free space (or fix the folder) and rerun with --resume",
        hint(source),
        last_good.as_ref().map_or("(none yet)".to_owned(), |p| p.display().to_string())
    )]
    SaveFailed { step: u64, source: Box<Error>, last_good: Option<PathBuf> },
    /// The batch source (the loader) failed before step `step`.
    #[error("the data feed failed before step {step}: {source}")]
    Feed { step: u64, source: Box<dyn std::error::Error + Send + Sync> },
    /// A k-NN evaluation (features of the shards) failed at step `step`.
    #[error("k-NN evaluation at step {step}: {source}")]
    Knn { step: u64, source: Box<dyn std::error::Error + Send + Sync> },
    /// A new run into a folder that already holds one.
    #[error(
        "{} already holds a run (newest checkpoint {}); pass --resume to continue it or choose \
         another --out",
        dir.display(),
        newest.display()
    )]
    RunExists { dir: PathBuf, newest: PathBuf },
    /// Data-parallel set-up or a collective failed (a lost peer, a timeout, a busy port).
    #[error("distributed: {0}")]
    Dist(String),
    /// A libtorch op called through the shim (csrc/shim.cpp) threw.
    #[error("libtorch {op}: {message}")]
    Libtorch { op: &'static str, message: String },
    /// A line of metrics.jsonl that is not a metrics record.
    #[error("{}: line {line}: {message}", path.display())]
    Metrics { path: PathBuf, line: usize, message: String },
}

fn hint(e: &Error) -> &'static str {
    let kind = match e {
        Error::File { source, .. } => source.kind(),
        _ => return "",
    };
    match kind {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => " -- the disk is full",
        io::ErrorKind::FileTooLarge => " -- a file size limit was reached",
        _ => "",
    }
}

impl Error {
    /// A configuration error about `key`, origin to be filled in by who knows it.
    pub(crate) fn config(key: &str, message: impl Into<String>) -> Self {
        Error::Config {
            origin: "configuration".into(),
            key: Some(key.to_owned()),
            message: message.into(),
        }
    }

    /// `map_err` helper for file operations.
    pub(crate) fn file(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_owned();
        move |source| Error::File { what, path, source }
    }
}

/// A named tensor that is missing or has another shape than the model's; [`Mismatch::at`] puts
/// the file it came from in front.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tensor {tensor}: {message}")]
pub struct Mismatch {
    pub tensor: String,
    pub message: String,
}

impl Mismatch {
    /// The error for a checkpoint (or init file) at `path`.
    pub fn at(self, path: &std::path::Path) -> Error {
        Error::Restore { path: path.to_owned(), tensor: self.tensor, message: self.message }
    }
}
