//! Which rows each rank sees in which order: a fresh permutation of all rows per epoch from
//! (seed, epoch), split by rank with equal counts, cut into batches; and a cursor that says how
//! far a run got, so a resumed run continues with exactly the batches it would have seen.

use serde::{Deserialize, Serialize};

use crate::rng::{Rng, StreamKey};

/// Position in the stream of batches: the next batch to produce is batch `batch` of `epoch`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cursor {
    /// Epoch (0-based).
    pub epoch: u64,
    /// Batch within the epoch (0-based).
    pub batch: u64,
}

/// Splits `rows` rows across `world` ranks, epoch by epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampler {
    /// Rows in the dataset.
    pub rows: u64,
    /// Seed of the permutations.
    pub seed: u64,
    /// This process's rank, `0..world`.
    pub rank: u64,
    /// Number of ranks.
    pub world: u64,
    /// Rows per batch on this rank.
    pub batch_size: u64,
    /// Drop the rows that do not fill a last batch (and the ranks' remainder); otherwise the
    /// epoch is padded by repeating its first rows so every rank has the same count
    /// (torch's `DistributedSampler`), and the last batch may be short.
    pub drop_last: bool,
}

impl Sampler {
    /// Rows this rank sees per epoch (before cutting into batches).
    pub fn rows_per_rank(&self) -> u64 {
        if self.drop_last { self.rows / self.world } else { self.rows.div_ceil(self.world) }
    }

    /// Batches per epoch on this rank.
    pub fn batches_per_epoch(&self) -> u64 {
        let r = self.rows_per_rank();
        if self.drop_last { r / self.batch_size } else { r.div_ceil(self.batch_size) }
    }

    /// This rank's rows of `epoch`, in order (all batches of the epoch, concatenated).
    pub fn epoch_rows(&self, epoch: u64) -> Vec<u64> {
        let n = self.rows;
        let mut perm: Vec<u64> = (0..n).collect();
        let mut rng =
            Rng::for_stream(StreamKey { seed: self.seed, epoch, sample: u64::MAX, view: u32::MAX });
        rng.shuffle(&mut perm);
        let total = self.rows_per_rank() * self.world;
        // Pad (no drop_last) by wrapping around to the start of the permutation.
        let global: Vec<u64> = (0..total).map(|i| perm[(i % n.max(1)) as usize]).collect();
        let mine: Vec<u64> =
            global.iter().skip(self.rank as usize).step_by(self.world as usize).copied().collect();
        let keep = if self.drop_last {
            (self.batches_per_epoch() * self.batch_size) as usize
        } else {
            mine.len()
        };
        mine[..keep].to_vec()
    }

    /// Rows of batch `cursor.batch` of `cursor.epoch`, given that epoch's rows.
    pub fn batch_rows<'a>(&self, epoch_rows: &'a [u64], batch: u64) -> &'a [u64] {
        let start = (batch * self.batch_size) as usize;
        let end = (start + self.batch_size as usize).min(epoch_rows.len());
        &epoch_rows[start.min(end)..end]
    }

    /// The cursor after `c`.
    pub fn next(&self, c: Cursor) -> Cursor {
        if c.batch + 1 >= self.batches_per_epoch() {
            Cursor { epoch: c.epoch + 1, batch: 0 }
        } else {
            Cursor { epoch: c.epoch, batch: c.batch + 1 }
        }
    }
}
