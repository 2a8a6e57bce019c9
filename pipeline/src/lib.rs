//! twoview-pipeline: image decode, resize and two-view augmentation for self-supervised
//! pretraining, and the prefetching loader that feeds a trainer u8 batches.
//!
//! This crate never links libtorch, so `cargo test -p twoview-pipeline` runs on any CPU box;
//! the trainer wraps the u8 batches it hands over as tensors itself. The modules land with
//! their issues: `decode`/`resize` (prep-shards), `augment` (two-view recipes), `loader`.
#![warn(missing_docs)]

/// The shard format this pipeline reads, re-exported so a user of the pipeline alone can name it.
pub use twoview_formats as formats;
