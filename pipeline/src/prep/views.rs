//! Offline views (`prep-shards --views K`): K pre-augmented view pairs per image, each variant in
//! its own row order, written as raw rows of `2H × W` (view 1 above view 2, i.e. exactly the
//! loader's `[2, H, W, 3]` layout) into the splits `<split>.views<k>` of the same folder.
//! The loader then serves epoch e from variant e mod K, a batch being a slice of the map.
//!
//! Trade-off (docs/shards.md): every epoch sees one of only K augmentations per image instead of
//! a fresh one, which weakens the augmentation that self-supervised learning relies on; use it
//! when the CPU cannot keep up otherwise, with K as large as the disk allows.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use twoview_formats::{Encoding, Manifest, Row, ShardSet, ShardWriter, SplitManifest};

use crate::augment::{Augmenter, Recipe};
use crate::decode::{DecodeOptions, Decoder};
use crate::loader::Sampler;
use crate::{Error, RgbMut, RgbRef};

/// What the view splits are made of (kept in the manifest's settings under "views").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewsSettings {
    /// The split they are made from.
    pub split: String,
    /// Variants.
    pub k: u32,
    /// View side (square views).
    pub size: u32,
    /// The recipe.
    pub recipe: Recipe,
    /// Seed of the orders and the augmentation.
    pub seed: u64,
    /// Rows per shard file.
    pub rows_per_shard: usize,
    /// Rows per record batch: make it the training batch size (or a multiple) so every batch is
    /// one contiguous slice of the map.
    pub batch_rows: usize,
}

/// Name of variant `k`'s split.
pub fn views_split(split: &str, k: u32) -> String {
    format!("{split}.views{k}")
}

impl ViewsSettings {
    /// The offline views a shard folder's manifest records (`prep-shards --views`), if any.
    pub fn recorded(manifest: &Manifest) -> Option<Self> {
        manifest
            .settings
            .get("views")
            .filter(|v| !v.is_null())
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }
}

/// The split offline views are made from after a prep: `train`, or the only split there is.
pub fn views_source_split(summary: &super::PrepSummary) -> String {
    if summary.rows.contains_key("train") {
        return "train".to_owned();
    }
    summary.rows.keys().next().cloned().unwrap_or_else(|| "train".to_owned())
}

/// Writes the view splits described by `vs` into `dir` (a finished prep-shards folder), one
/// variant at a time; the manifest is updated after each, so an interrupted run resumes at the
/// first missing variant. `progress(done, total)` counts rows.
pub fn write_views(
    dir: &std::path::Path,
    vs: &ViewsSettings,
    stop: &AtomicBool,
    mut progress: impl FnMut(u64, u64),
) -> Result<(), Error> {
    vs.recipe.validate()?;
    let set = ShardSet::open(dir, &vs.split)?;
    let n = set.len();
    let mut manifest = Manifest::load(dir)?;
    let recorded = manifest.settings.get("views").cloned();
    if let Some(prev) = recorded.filter(|p| !p.is_null()) {
        let prev: ViewsSettings = serde_json::from_value(prev).map_err(|e| Error::Output {
            path: dir.to_owned(),
            reason: format!("unreadable views settings in the manifest: {e}"),
        })?;
        if &prev != vs {
            return Err(Error::Output {
                path: dir.to_owned(),
                reason: "holds view splits made with other --views settings; remove them from the folder \
                         (files and manifest entries) or use another folder"
                    .into(),
            });
        }
    }
    manifest.settings["views"] = serde_json::to_value(vs).expect("serialises");
    let total = n * vs.k as u64;
    let pair = 2 * vs.size as usize * vs.size as usize * 3;
    for k in 0..vs.k {
        let name = views_split(&vs.split, k);
        if manifest.splits.contains_key(&name) {
            progress(n * (k as u64 + 1), total);
            continue;
        }
        // Variant k's row order: the sampler's permutation for "epoch" k (one rank).
        let order =
            Sampler { rows: n, seed: vs.seed, rank: 0, world: 1, batch_size: 1, drop_last: false }
                .epoch_rows(k as u64);
        let count = order.len().div_ceil(vs.rows_per_shard).max(1);
        let mut split = SplitManifest { inputs: n, rows: 0, shards: Vec::new() };
        for (s, chunk) in order.chunks(vs.rows_per_shard).enumerate() {
            let file = super::shard_name(&name, s, count);
            let mut w = ShardWriter::create(&dir.join(&file), vs.batch_rows)?;
            for (b, rows) in chunk.chunks(vs.batch_rows).enumerate() {
                if stop.load(Ordering::Relaxed) {
                    return Err(Error::Interrupted);
                }
                let pairs: Vec<Result<Vec<u8>, Error>> = rows
                    .par_iter()
                    .map_init(
                        || (Augmenter::new(), Decoder::new()),
                        |(aug, dec), &row| {
                            let r = set.row(row)?;
                            let decoded;
                            let src = match r.encoding {
                                Encoding::RawRgb => {
                                    RgbRef::try_new(r.pixels, r.width as u32, r.height as u32)?
                                }
                                Encoding::Jpeg => {
                                    decoded = dec
                                        .decode(r.pixels, r.key, &DecodeOptions::default())?
                                        .image;
                                    decoded.view()
                                }
                            };
                            let mut out = vec![0u8; pair];
                            let (a, bb) = out.split_at_mut(pair / 2);
                            aug.two_views(
                                &vs.recipe,
                                src,
                                (vs.seed, k as u64, row),
                                &mut RgbMut::try_new(a, vs.size, vs.size)?,
                                &mut RgbMut::try_new(bb, vs.size, vs.size)?,
                            )?;
                            Ok(out)
                        },
                    )
                    .collect();
                for (&row, px) in rows.iter().zip(pairs) {
                    let r = set.row(row)?;
                    w.push(&Row {
                        key: r.key,
                        label: r.label,
                        height: (2 * vs.size) as u16,
                        width: vs.size as u16,
                        encoding: Encoding::RawRgb,
                        pixels: &px?,
                    })?;
                }
                progress(
                    k as u64 * n + (s * vs.rows_per_shard + b * vs.batch_rows + rows.len()) as u64,
                    total,
                );
            }
            split.rows += w.rows();
            split.shards.push(w.finish()?);
        }
        manifest.splits.insert(name, split);
        manifest.save(dir)?;
    }
    Ok(())
}
