//! Errors of the formats crate. Every variant names the file (and batch/row when there is one).

use std::path::PathBuf;

/// Everything reading or writing shards and manifests can fail at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The OS refused a file operation.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Arrow could not encode or decode a shard (or one of its record batches).
    #[error("{path}{}: {source}", batch.map(|b| format!(", record batch {b}")).unwrap_or_default())]
    Arrow {
        /// The shard file.
        path: PathBuf,
        /// The record batch, when the failure is inside one.
        batch: Option<usize>,
        /// Arrow's message.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// A shard whose bytes are not what a twoview shard must be (truncated, damaged, or written by
    /// something else).
    #[error("{path}: damaged shard: {reason}")]
    Corrupt {
        /// The shard file.
        path: PathBuf,
        /// What is wrong, naming the batch/row when known.
        reason: String,
    },
    /// A shard whose content hash differs from the manifest's.
    #[error("{path}: checksum mismatch: manifest says {expected}, file hashes to {actual}")]
    Checksum {
        /// The shard file.
        path: PathBuf,
        /// The manifest's checksum.
        expected: String,
        /// The file's checksum now.
        actual: String,
    },
    /// A manifest that does not parse or does not fit its shards.
    #[error("{path}: {reason}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Two shard folders used together (train and val) whose class lists differ: labels would
    /// mean different classes.
    #[error("{a} and {b} have different classes: {reason}")]
    ClassesDiffer {
        /// One manifest.
        a: PathBuf,
        /// The other manifest.
        b: PathBuf,
        /// The first difference.
        reason: String,
    },
    /// A folder another live process holds (`DIR/.lock`).
    #[error("{path} is in use by another {holder}; wait for it to finish or stop it")]
    Locked {
        /// The folder.
        path: PathBuf,
        /// Who holds it, e.g. "trainer (pid 1234)".
        holder: String,
    },
    /// A row index past the end of a shard set.
    #[error("row {index} is out of range: the set has {rows} rows")]
    RowOutOfRange {
        /// The index asked for.
        index: u64,
        /// How many rows there are.
        rows: u64,
    },
    /// A row that cannot be written as given (e.g. pixels of the wrong length).
    #[error("row {key:?}: {reason}")]
    InvalidRow {
        /// The row's key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
