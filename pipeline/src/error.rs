//! Errors of the pipeline crate, with the context needed to act on them.

use std::path::PathBuf;

/// Everything the pipeline can fail at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A pixel buffer whose length does not match its declared size.
    #[error("RGB buffer for {width}x{height} needs {expected} bytes, got {got}")]
    BufferSize {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// `width * height * 3`.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// An image that could not be decoded.
    #[error("{what}: cannot decode ({}): {reason}", kind.name())]
    Decode {
        /// The file or row the bytes came from.
        what: String,
        /// The kind of failure, for grouping in summaries.
        kind: crate::decode::DecodeFailure,
        /// The decoder's message.
        reason: String,
    },
    /// Pixels that could not be encoded (JPEG shards).
    #[error("{what}: cannot encode as JPEG: {reason}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// The encoder's message.
        reason: String,
    },
    /// An image that could not be written.
    #[error("{path}: cannot write image: {source}")]
    WriteImage {
        /// Destination.
        path: PathBuf,
        /// The encoder's reason.
        #[source]
        source: image::ImageError,
    },
    /// A file that could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A recipe whose text does not parse.
    #[error("recipe {origin}: {source}")]
    RecipeParse {
        /// Where the text came from (a path, or "<string>").
        origin: String,
        /// The TOML parser's message, with line and column.
        #[source]
        source: toml::de::Error,
    },
    /// A recipe with a value out of its range, or a name no preset has.
    #[error("recipe {recipe}: {reason}")]
    InvalidRecipe {
        /// The recipe's name.
        recipe: String,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// The resizer refused a crop (a broken internal invariant if it happens).
    #[error("crop+resize {src_w}x{src_h} -> {dst_w}x{dst_h}: {reason}")]
    Resize {
        /// Source width.
        src_w: u32,
        /// Source height.
        src_h: u32,
        /// Destination width.
        dst_w: u32,
        /// Destination height.
        dst_h: u32,
        /// fast_image_resize's message.
        reason: String,
    },
    /// A dataset root that is not one of the layouts prep-shards reads.
    #[error("{root}: {reason}")]
    Layout {
        /// The root.
        root: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// A labels file line that does not parse.
    #[error("{path}:{line}: {reason}")]
    Labels {
        /// The labels file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A shard folder that cannot be written or resumed.
    #[error("{path}: {reason}")]
    Output {
        /// The output folder.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Stopped on request (e.g. Ctrl-C) between batches; finished work is kept for a rerun.
    #[error("interrupted; finished shards are kept, rerun the same command to resume")]
    Interrupted,
    /// A loader that cannot start as configured.
    #[error("loader: {reason}")]
    Loader {
        /// What is wrong.
        reason: String,
    },
    /// A shard row the loader could not turn into views.
    #[error("{row}: {reason}")]
    BadRow {
        /// Shard file, row in it, and key.
        row: String,
        /// What went wrong.
        reason: String,
    },
    /// Reading or writing shards failed.
    #[error(transparent)]
    Format(#[from] twoview_formats::Error),
}
