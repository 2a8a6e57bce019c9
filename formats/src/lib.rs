//! twoview's shard format: Arrow IPC *files* holding image bytes and labels.
//!
//! A shard is one Arrow IPC file with the columns of [`shard_schema`]: `key` (relative path of
//! the source image), `label`, `height`, `width`, `encoding` (raw RGB HWC u8 or JPEG) and
//! `pixels`. The schema metadata carries [`FORMAT_VERSION`]. A shard folder holds shard files
//! and a [`Manifest`] (`manifest.json`: classes, splits, shards with xxh3 checksums, settings,
//! skipped inputs). [`ShardWriter`] writes a shard atomically; [`Shard`] maps one and serves rows
//! whose bytes point into the map; [`ShardSet`] indexes a whole split.
//! This crate knows nothing about pixels or tensors: it moves bytes, shapes and labels.
//!
//! ```
//! use twoview_formats::{Encoding, Row, Shard, ShardWriter};
//! let dir = std::env::temp_dir().join(format!("twoview-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("train-00000-of-00001.arrow");
//! let mut w = ShardWriter::create(&path, 64)?;
//! let pixels = [7u8; 2 * 3 * 3];
//! w.push(&Row { key: "n01/a.JPEG", label: 0, height: 2, width: 3, encoding: Encoding::RawRgb, pixels: &pixels })?;
//! let info = w.finish()?;
//! let shard = Shard::open(&path)?;
//! assert_eq!((info.rows, shard.row(0)?.pixels), (1, &pixels[..]));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod error;
mod lock;
mod manifest;
mod reader;
mod schema;
mod set;
mod writer;

pub use arrow_buffer::Buffer;
pub use error::Error;
pub use lock::{DirLock, lock_dir};
pub use manifest::{MANIFEST_FILE, Manifest, ShardInfo, Skipped, SplitManifest};
pub use reader::{Shard, file_checksum};
pub use schema::{Encoding, FORMAT_VERSION, FORMAT_VERSION_KEY, column, shard_schema};
pub use set::ShardSet;
pub use writer::{ShardWriter, write_atomic};

/// One row of a shard: the stored image and what is known about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row<'a> {
    /// Path of the source image relative to the dataset root.
    pub key: &'a str,
    /// Class index into the manifest's classes, -1 when unknown.
    pub label: i32,
    /// Stored height in pixels.
    pub height: u16,
    /// Stored width in pixels.
    pub width: u16,
    /// How `pixels` is stored.
    pub encoding: Encoding,
    /// The stored bytes: `height * width * 3` raw RGB bytes, or a JPEG stream.
    pub pixels: &'a [u8],
}

impl Row<'_> {
    /// Checks the invariants every stored row keeps; `Err` says which is broken.
    pub fn check(&self) -> Result<(), String> {
        if self.height == 0 || self.width == 0 {
            return Err(format!("empty image {}x{}", self.width, self.height));
        }
        if self.label < -1 {
            return Err(format!("label {} (must be >= -1)", self.label));
        }
        match self.encoding {
            Encoding::RawRgb => {
                let want = self.height as usize * self.width as usize * 3;
                if self.pixels.len() != want {
                    return Err(format!(
                        "raw {}x{} RGB needs {want} bytes, has {}",
                        self.width,
                        self.height,
                        self.pixels.len()
                    ));
                }
            }
            Encoding::Jpeg => {
                if !self.pixels.starts_with(&[0xFF, 0xD8]) {
                    return Err("JPEG bytes do not start with an SOI marker".into());
                }
            }
        }
        Ok(())
    }
}

/// The manifest's notation for an xxh3-64 digest.
pub(crate) fn checksum_string(digest: u64) -> String {
    format!("xxh3:{digest:016x}")
}

#[cfg(test)]
mod tests;
