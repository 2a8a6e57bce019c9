//! The loader on small shard sets made here.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use twoview_formats::{Manifest, Row, ShardWriter, SplitManifest};

use super::*;
use crate::decode::JpegEncoder;
use crate::prep::{self, PrepOptions, SplitSelection, StoreEncoding};
use crate::resize::Fit;

/// `n` textured JPEGs in 3 class folders, prepared into shards (raw or JPEG rows).
fn shard_set(dir: &Path, n: u32, encoding: StoreEncoding) -> ShardSet {
    let root = dir.join("root");
    let mut enc = JpegEncoder::new();
    for i in 0..n {
        let (w, h) = (48 + i % 5 * 8, 40 + i % 3 * 8);
        let data = (0..h)
            .flat_map(|y| {
                (0..w).flat_map(move |x| [(x * 5 + i) as u8, (y * 7) as u8, (x ^ y ^ i) as u8])
            })
            .collect();
        let img = RgbImage::try_from_vec(data, w, h).unwrap();
        let mut jpeg = Vec::new();
        enc.encode(img.view(), 90, &mut jpeg).unwrap();
        let class = root.join(format!("c{}", i % 3));
        std::fs::create_dir_all(&class).unwrap();
        std::fs::write(class.join(format!("{i:03}.jpg")), jpeg).unwrap();
    }
    let out = dir.join("shards");
    let scan = prep::scan(&root, SplitSelection::All, None).unwrap();
    let opts = PrepOptions {
        fit: Fit::ShortSide(40),
        encoding,
        rows_per_shard: 16,
        batch_rows: 5,
        ..Default::default()
    };
    prep::run(&scan, &out, &opts, "test", &AtomicBool::new(false), |_| {}).unwrap();
    ShardSet::open(&out, "train").unwrap()
}

fn cfg(batch: usize, threads: usize) -> LoaderConfig {
    LoaderConfig {
        threads,
        prefetch: 2,
        seed: 5,
        end_epoch: Some(2),
        ..LoaderConfig::new(batch, 24)
    }
}

/// (cursor, rows, labels, pixels) of one batch.
type Seen = (Cursor, Vec<u64>, Vec<i32>, Vec<u8>);

fn collect(set: &ShardSet, c: LoaderConfig) -> Vec<Seen> {
    Loader::new(set.clone(), Recipe::mocov3_vit(), c, Arc::new(HeapAlloc))
        .unwrap()
        .map(|b| {
            let b = b.unwrap();
            (b.cursor, b.rows.clone(), b.labels.clone(), b.pixels().to_vec())
        })
        .collect()
}

#[test]
fn every_row_once_per_epoch_across_ranks_with_equal_counts() {
    for (rows, world, batch, drop_last) in
        [(103u64, 4u64, 5u64, true), (103, 4, 5, false), (10, 3, 4, false), (64, 2, 8, true)]
    {
        let samplers: Vec<Sampler> = (0..world)
            .map(|rank| Sampler { rows, seed: 9, rank, world, batch_size: batch, drop_last })
            .collect();
        for epoch in 0..3 {
            let per_rank: Vec<Vec<u64>> = samplers.iter().map(|s| s.epoch_rows(epoch)).collect();
            let counts: Vec<usize> = per_rank.iter().map(Vec::len).collect();
            assert!(counts.iter().all(|&c| c == counts[0]), "unequal counts {counts:?}");
            let mut seen = BTreeMap::new();
            for r in per_rank.iter().flatten() {
                *seen.entry(*r).or_insert(0) += 1;
            }
            if drop_last {
                assert!(seen.values().all(|&c| c == 1), "a row twice with drop_last");
                assert_eq!(counts[0] as u64, rows / world / batch * batch);
            } else {
                assert_eq!(seen.len() as u64, rows, "every row at least once");
                assert!(seen.values().all(|&c| c <= 2));
                assert_eq!(counts[0] as u64, rows.div_ceil(world));
            }
            assert_eq!(samplers[0].batches_per_epoch(), (counts[0] as u64).div_ceil(batch));
        }
        let (e0, e1) = (samplers[0].epoch_rows(0), samplers[0].epoch_rows(1));
        assert_ne!(e0, e1, "a fresh permutation per epoch");
    }
}

#[test]
fn same_seed_same_batches_on_any_thread_count_and_resume_from_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    for encoding in [StoreEncoding::Raw, StoreEncoding::Jpeg] {
        let sub = dir.path().join(format!("{encoding:?}"));
        let set = shard_set(&sub, 29, encoding);
        let one = collect(&set, cfg(4, 1));
        let three = collect(&set, cfg(4, 3));
        assert_eq!(one.len(), 2 * 7, "29 rows / 4, drop_last, 2 epochs");
        assert!(one == three, "{encoding:?}: batches differ between 1 and 3 threads");
        // Labels follow the rows' classes; views differ from each other.
        for (_, rows, labels, px) in &one {
            for (r, l) in rows.iter().zip(labels) {
                assert_eq!(*l, set.row(*r).unwrap().label);
            }
            assert_ne!(px[..24 * 24 * 3], px[24 * 24 * 3..2 * 24 * 24 * 3]);
        }
        // Resume after batch 4 (epoch 0, batch 4): the rest is identical.
        let resume = Cursor { epoch: 0, batch: 5 };
        let rest = collect(&set, LoaderConfig { start: resume, ..cfg(4, 2) });
        assert_eq!(rest.first().unwrap().0, resume);
        assert!(rest[..] == one[5..], "{encoding:?}: resumed batches differ");
    }
}

fn loader_threads(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter(|e| {
                let comm = std::fs::read_to_string(e.as_ref().unwrap().path().join("comm"))
                    .unwrap_or_default();
                comm.starts_with(prefix)
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn dropping_the_loader_mid_epoch_stops_every_thread() {
    let dir = tempfile::tempdir().unwrap();
    let set = shard_set(dir.path(), 40, StoreEncoding::Raw);
    let c = LoaderConfig { name: "tvl-drop".into(), end_epoch: None, ..cfg(4, 3) };
    let mut loader = Loader::new(set, Recipe::mocov3_vit(), c, Arc::new(HeapAlloc)).unwrap();
    let held = loader.next_batch().unwrap().unwrap(); // a batch still held by the consumer
    std::thread::sleep(Duration::from_millis(50)); // let the producer fill the ring and block
    assert!(loader_threads("tvl-drop") >= 4, "producer + 3 workers should be running");
    let t = Instant::now();
    drop(loader);
    assert!(t.elapsed() < Duration::from_secs(2), "drop took {:?}", t.elapsed());
    drop(held); // after the loader: its buffer is freed, not returned
    let deadline = Instant::now() + Duration::from_secs(5);
    while loader_threads("tvl-drop") > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(loader_threads("tvl-drop"), 0, "loader threads left running");
}

#[test]
fn a_corrupt_row_fails_naming_shard_and_row_or_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let mut w = ShardWriter::create(&out.join("train-00000-of-00001.arrow"), 4).unwrap();
    let good = vec![90u8; 32 * 32 * 3];
    for i in 0..12 {
        let key = format!("c/{i}.jpg");
        let bad = [0xFFu8, 0xD8, 0xFF, 0xE0, 1, 2, 3];
        let row = if i == 7 {
            Row {
                key: &key,
                label: 1,
                height: 32,
                width: 32,
                encoding: Encoding::Jpeg,
                pixels: &bad,
            }
        } else {
            Row {
                key: &key,
                label: 0,
                height: 32,
                width: 32,
                encoding: Encoding::RawRgb,
                pixels: &good,
            }
        };
        w.push(&row).unwrap();
    }
    let info = w.finish().unwrap();
    let mut m = Manifest::new("test", vec!["a".into(), "b".into()], serde_json::json!({}));
    m.splits.insert("train".into(), SplitManifest { inputs: 12, rows: 12, shards: vec![info] });
    m.save(out).unwrap();
    let set = ShardSet::open(out, "train").unwrap();
    let c = LoaderConfig { end_epoch: Some(1), ..cfg(12, 2) };

    let results: Vec<_> =
        Loader::new(set.clone(), Recipe::mocov3_vit(), c.clone(), Arc::new(HeapAlloc))
            .unwrap()
            .collect();
    let err =
        results.into_iter().find_map(Result::err).expect("the bad row must surface").to_string();
    assert!(err.contains("train-00000-of-00001.arrow, row 7") && err.contains("c/7.jpg"), "{err}");

    let c = LoaderConfig { on_bad_row: BadRowPolicy::Replace, ..c };
    let mut loader = Loader::new(set, Recipe::mocov3_vit(), c, Arc::new(HeapAlloc)).unwrap();
    let b = loader.next_batch().unwrap().unwrap();
    assert_eq!((b.len, b.replaced), (12, 1));
    assert!(b.rows.contains(&8) && !b.rows.contains(&7), "row 7 replaced by row 8: {:?}", b.rows);
    drop(b);
    assert_eq!(loader.stats().replaced, 1);
}
