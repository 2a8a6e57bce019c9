//! twoview's shard format: Arrow IPC *files* holding image bytes and labels.
//!
//! A shard is one Arrow IPC file with the columns of [`shard_schema`]: `key` (relative path of
//! the source image), `label`, `height`, `width`, `encoding` (raw RGB HWC u8 or JPEG) and
//! `pixels`. The schema metadata carries [`FORMAT_VERSION`]. This crate knows nothing about
//! pixels or tensors: it moves bytes, shapes and labels.
//!
//! ```
//! use twoview_formats::{shard_schema, FORMAT_VERSION, FORMAT_VERSION_KEY};
//! let schema = shard_schema();
//! assert_eq!(schema.metadata()[FORMAT_VERSION_KEY], FORMAT_VERSION.to_string());
//! assert_eq!(schema.field(0).name(), "key");
//! ```
#![warn(missing_docs)]

mod schema;

pub use schema::{Encoding, FORMAT_VERSION, FORMAT_VERSION_KEY, column, shard_schema};
