//! A split of a shard folder as one indexable set of rows.

use std::path::{Path, PathBuf};

use crate::{Error, Manifest, Row, Shard, file_checksum};

/// All shards of one split, opened (mapped) and indexed by global row number.
#[derive(Clone, Debug)]
pub struct ShardSet {
    dir: PathBuf,
    manifest: Manifest,
    split: String,
    shards: Vec<Shard>,
    /// `starts[s]` = global index of shard `s`'s first row; one extra entry = total.
    starts: Vec<u64>,
}

impl ShardSet {
    /// Opens split `split` of the shard folder `dir`: reads the manifest, maps and checks every
    /// shard, and checks each holds the rows the manifest says.
    pub fn open(dir: &Path, split: &str) -> Result<Self, Error> {
        let manifest = Manifest::load(dir)?;
        let entries = manifest.split(dir, split)?.shards.clone();
        let mut shards = Vec::with_capacity(entries.len());
        let mut starts = vec![0u64];
        for info in &entries {
            let path = dir.join(&info.file);
            if !path.is_file() {
                return Err(Error::Manifest {
                    path: Manifest::path_in(dir),
                    reason: format!("lists shard {}, which is not in the folder", info.file),
                });
            }
            let shard = Shard::open(&path)?;
            if shard.num_rows() != info.rows {
                return Err(Error::Manifest {
                    path: Manifest::path_in(dir),
                    reason: format!(
                        "{} holds {} rows, the manifest says {}",
                        info.file,
                        shard.num_rows(),
                        info.rows
                    ),
                });
            }
            starts.push(starts.last().expect("non-empty") + info.rows);
            shards.push(shard);
        }
        Ok(Self { dir: dir.to_owned(), manifest, split: split.to_owned(), shards, starts })
    }

    /// Refuses `other` (e.g. the val split of another folder) when its classes are not this
    /// set's, in the same order: label `i` must name the same class in both. The error names
    /// both manifests and the first class that differs.
    pub fn check_same_classes(&self, other: &ShardSet) -> Result<(), Error> {
        let (a, b) = (&self.manifest.classes, &other.manifest.classes);
        let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) else {
            return Ok(());
        };
        let name = |c: &[String]| c.get(i).map_or("nothing".to_owned(), |s| format!("{s:?}"));
        Err(Error::ClassesDiffer {
            a: Manifest::path_in(&self.dir),
            b: Manifest::path_in(&other.dir),
            reason: format!(
                "label {i} is {} in the first and {} in the second ({} and {} classes)",
                name(a),
                name(b),
                a.len(),
                b.len()
            ),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The split's name.
    pub fn split(&self) -> &str {
        &self.split
    }

    /// The manifest of the folder.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The opened shards, in row order.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Rows in the split.
    pub fn len(&self) -> u64 {
        *self.starts.last().expect("starts is never empty")
    }

    /// Whether the split has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (shard index, row within that shard) of global row `index`.
    pub fn locate(&self, index: u64) -> Result<(usize, u64), Error> {
        if index >= self.len() {
            return Err(Error::RowOutOfRange { index, rows: self.len() });
        }
        let s = self.starts.partition_point(|&st| st <= index) - 1;
        Ok((s, index - self.starts[s]))
    }

    /// Global row `index`, borrowing from the map.
    pub fn row(&self, index: u64) -> Result<Row<'_>, Error> {
        let (s, i) = self.locate(index)?;
        self.shards[s].row(i)
    }

    /// Rows `first..first + count` as one buffer into the map when contiguous (one record batch
    /// of one shard); see [`Shard::contiguous_pixels`].
    pub fn contiguous_pixels(&self, first: u64, count: u64) -> Option<arrow_buffer::Buffer> {
        let (s, i) = self.locate(first).ok()?;
        self.shards[s].contiguous_pixels(i, count)
    }

    /// Re-hashes every shard file and compares with the manifest.
    pub fn verify_checksums(&self) -> Result<(), Error> {
        let entries = &self.manifest.split(&self.dir, &self.split)?.shards;
        for info in entries {
            let path = self.dir.join(&info.file);
            let actual = file_checksum(&path)?;
            if actual != info.checksum {
                return Err(Error::Checksum { path, expected: info.checksum.clone(), actual });
            }
        }
        Ok(())
    }
}
