//! `manifest.json`: what a shard folder holds, how it was made, and what was left out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, FORMAT_VERSION};

/// File name of the manifest inside a shard folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// One finished shard file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// File name inside the shard folder.
    pub file: String,
    /// Rows stored.
    pub rows: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// `xxh3:` + 16 hex digits of the xxh3-64 hash of the whole file.
    pub checksum: String,
}

/// One input that was not stored, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The split it belonged to.
    pub split: String,
    /// Its path relative to the dataset root.
    pub key: String,
    /// Why it was skipped (the decoder's message).
    pub reason: String,
}

/// The shards of one split, in row order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitManifest {
    /// Input files found for this split.
    pub inputs: u64,
    /// Rows stored (inputs minus skipped).
    pub rows: u64,
    /// Shards in row order.
    pub shards: Vec<ShardInfo>,
}

/// The manifest of a shard folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Shard format version of every shard listed.
    pub format_version: u32,
    /// The program that wrote it.
    pub created_by: String,
    /// Class names; a row's `label` indexes this list (torchvision ImageFolder order).
    pub classes: Vec<String>,
    /// Splits by name (`train`, `val`).
    pub splits: BTreeMap<String, SplitManifest>,
    /// How the shards were made (free-form; written by the producer).
    pub settings: serde_json::Value,
    /// Inputs that were not stored, with reasons.
    pub skipped: Vec<Skipped>,
}

impl Manifest {
    /// An empty manifest of this format version.
    pub fn new(
        created_by: impl Into<String>,
        classes: Vec<String>,
        settings: serde_json::Value,
    ) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            created_by: created_by.into(),
            classes,
            splits: BTreeMap::new(),
            settings,
            skipped: Vec::new(),
        }
    }

    /// Path of the manifest inside `dir`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(MANIFEST_FILE)
    }

    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let path = Self::path_in(dir);
        let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
        let manifest: Self = serde_json::from_str(&text)
            .map_err(|e| Error::Manifest { path: path.clone(), reason: e.to_string() })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(Error::Manifest {
                path,
                reason: format!(
                    "format version {}; this build reads {FORMAT_VERSION}",
                    manifest.format_version
                ),
            });
        }
        // Shards are files of this folder: a name that leads elsewhere is refused, not opened.
        for (split, m) in &manifest.splits {
            for info in &m.shards {
                let f = info.file.as_str();
                let plain = !f.is_empty()
                    && f.ends_with(".arrow")
                    && !f.starts_with('.')
                    && !f.contains(['/', '\\', '\0']);
                if !plain {
                    return Err(Error::Manifest {
                        path,
                        reason: format!(
                            "split {split:?} lists shard {f:?}, which is not a plain *.arrow file name \
                             in the folder"
                        ),
                    });
                }
            }
        }
        Ok(manifest)
    }

    /// Writes `dir/manifest.json` atomically (temp, fsync, rename).
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(self).expect("a manifest always serialises");
        crate::write_atomic(&Self::path_in(dir), format!("{text}\n").as_bytes())
    }

    /// The split named `name`, or an error listing the ones there are.
    pub fn split(&self, dir: &Path, name: &str) -> Result<&SplitManifest, Error> {
        self.splits.get(name).ok_or_else(|| Error::Manifest {
            path: Self::path_in(dir),
            reason: format!(
                "no split {name:?}; this folder has {:?}",
                self.splits.keys().collect::<Vec<_>>()
            ),
        })
    }
}
