//! Deterministic evaluation views: the centre of each image, as the reference's evaluation
//! transform (`Resize(size / 0.875)` then `CenterCrop(size)`) frames it, resampled once.
//! Used for k-NN and linear-probe features; batches are computed in parallel and handed out in
//! row order, so memory is one batch at a time whatever the split's size.

use rayon::prelude::*;
use twoview_formats::{Encoding, ShardSet};

use crate::augment::CropBox;
use crate::decode::{DecodeOptions, Decoder};
use crate::resize::Resizer;
use crate::{Error, RgbMut, RgbRef};

// DEVIATION: the window of Resize + CenterCrop resampled once, not resized then cropped
// (docs/deviations.md #6).
/// The centre crop that resize-short-side-to-`size / 0.875` then centre-crop-`size` selects,
/// in source pixels: a square of 87.5 % of the short side, centred (offsets rounded half
/// away from zero).
pub fn center_box(width: u32, height: u32) -> CropBox {
    let short = width.min(height);
    let side = ((short as f64 * 0.875).round() as u32).clamp(1, short);
    let left = ((width - side) as f64 / 2.0).round() as u32;
    let top = ((height - side) as f64 / 2.0).round() as u32;
    CropBox { top, left, height: side, width: side }
}

/// `count` rows spread evenly over `0..len` (all of them when `count` is 0 or ≥ `len`).
pub fn spread_rows(len: u64, count: usize) -> Vec<u64> {
    if count == 0 || count as u64 >= len {
        return (0..len).collect();
    }
    (0..count as u64).map(|i| i * len / count as u64).collect()
}

/// One batch of evaluation views: `[len, size, size, 3]` u8 and the labels.
#[derive(Debug)]
pub struct EvalBatch {
    /// `[len, size, size, 3]` u8.
    pub pixels: Vec<u8>,
    /// Class index per image.
    pub labels: Vec<i32>,
    /// Images in the batch.
    pub len: usize,
}

/// Batches of evaluation views over chosen rows of a split.
pub struct EvalViews<'a> {
    set: &'a ShardSet,
    rows: Vec<u64>,
    size: u32,
    batch: usize,
    next: usize,
}

impl<'a> EvalViews<'a> {
    /// Views of `size`×`size` of `rows` of `set`, `batch` at a time (on the current rayon pool).
    pub fn new(set: &'a ShardSet, rows: Vec<u64>, size: u32, batch: usize) -> Self {
        Self { set, rows, size, batch: batch.max(1), next: 0 }
    }

    /// Rows in all.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No rows at all.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn view(&self, row: u64, out: &mut [u8], state: &mut (Decoder, Resizer)) -> Result<i32, Error> {
        let r = self.set.row(row)?;
        let bad = |reason: String| {
            let (s, i) = self.set.locate(row).expect("row exists");
            Error::BadRow {
                row: format!("{}, row {i} ({})", self.set.shards()[s].path().display(), r.key),
                reason,
            }
        };
        let decoded;
        let src = match r.encoding {
            Encoding::RawRgb => RgbRef::try_new(r.pixels, r.width as u32, r.height as u32)
                .map_err(|e| bad(e.to_string()))?,
            Encoding::Jpeg => {
                decoded = state
                    .0
                    .decode(r.pixels, r.key, &DecodeOptions::default())
                    .map_err(|e| bad(e.to_string()))?;
                decoded.image.view()
            }
        };
        let mut dst = RgbMut::try_new(out, self.size, self.size)?;
        state
            .1
            .crop_resize(src, center_box(src.width(), src.height()), &mut dst)
            .map_err(|e| bad(e.to_string()))?;
        Ok(r.label)
    }
}

impl Iterator for EvalViews<'_> {
    type Item = Result<EvalBatch, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.rows.len() {
            return None;
        }
        let end = (self.next + self.batch).min(self.rows.len());
        let rows = &self.rows[self.next..end];
        self.next = end;
        let bytes = self.size as usize * self.size as usize * 3;
        let mut pixels = vec![0u8; rows.len() * bytes];
        let labels: Result<Vec<i32>, Error> = pixels
            .par_chunks_mut(bytes)
            .zip(rows.par_iter())
            .map_init(
                || (Decoder::new(), Resizer::new()),
                |st, (out, &row)| self.view(row, out, st),
            )
            .collect();
        Some(labels.map(|labels| EvalBatch { len: labels.len(), pixels, labels }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn center_box_is_the_resize_then_crop_window() {
        // 256×341 (ImageNet-like, portrait): the short side 256 → crop side 224, centred.
        assert_eq!(center_box(256, 341), CropBox { top: 59, left: 16, height: 224, width: 224 });
        assert_eq!(center_box(64, 64), CropBox { top: 4, left: 4, height: 56, width: 56 });
        assert_eq!(center_box(1, 1), CropBox { top: 0, left: 0, height: 1, width: 1 });
    }

    #[test]
    fn spread_rows_covers_evenly() {
        assert_eq!(spread_rows(10, 0), (0..10).collect::<Vec<_>>());
        assert_eq!(spread_rows(10, 20), (0..10).collect::<Vec<_>>());
        assert_eq!(spread_rows(10, 5), [0, 2, 4, 6, 8]);
    }
}
