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

/// Offline views of the train split: `k` variants of 24-px pairs, 4 rows per record batch.
fn views_settings(k: u32) -> prep::ViewsSettings {
    prep::ViewsSettings {
        split: "train".into(),
        k,
        size: 24,
        recipe: Recipe::mocov3_vit(),
        seed: 3,
        rows_per_shard: 16,
        batch_rows: 4,
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

#[test]
fn offline_views_are_served_from_the_map_one_variant_per_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let base = shard_set(dir.path(), 30, StoreEncoding::Jpeg);
    let shards = base.dir().to_owned();
    let vs = views_settings(2);
    prep::write_views(&shards, &vs, &AtomicBool::new(false), |_, _| {}).unwrap();
    prep::write_views(&shards, &vs, &AtomicBool::new(false), |_, _| {}).unwrap(); // done: no-op
    let other = prep::ViewsSettings { seed: 4, ..vs.clone() };
    let err = prep::write_views(&shards, &other, &AtomicBool::new(false), |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("other --views settings"), "{err}");

    let variants: Vec<ShardSet> =
        (0..2).map(|k| ShardSet::open(&shards, &prep::views_split("train", k)).unwrap()).collect();
    let c = LoaderConfig { end_epoch: Some(3), ..cfg(4, 1) };
    let batches: Vec<Batch> =
        Loader::from_views(&shards, "train", c).unwrap().map(Result::unwrap).collect();
    assert_eq!(batches.len(), 3 * 7, "30 rows / 4 = 7 batches per epoch");
    let mut aug = Augmenter::new();
    let mut dec = crate::decode::Decoder::new();
    for b in &batches {
        assert!(b.is_mapped(), "batch {:?} was copied", b.cursor);
        let variant = &variants[(b.cursor.epoch % 2) as usize];
        let file = mapped_file_at(b.pixels().as_ptr() as usize).unwrap_or_default();
        let expect = format!("train.views{}-", b.cursor.epoch % 2);
        assert!(
            file.contains(&expect),
            "batch {:?} points into {file:?}, not a file of {expect}",
            b.cursor
        );
        // Sample 0's views are the augmenter's output for (seed, variant, base row).
        let key = variant.row(b.rows[0]).unwrap().key;
        let base_row = (0..base.len()).find(|&i| base.row(i).unwrap().key == key).unwrap();
        let src =
            dec.decode(base.row(base_row).unwrap().pixels, key, &Default::default()).unwrap().image;
        let mut want = vec![0u8; 2 * 24 * 24 * 3];
        let (x, y) = want.split_at_mut(24 * 24 * 3);
        aug.two_views(
            &vs.recipe,
            src.view(),
            (3, b.cursor.epoch % 2, base_row),
            &mut RgbMut::try_new(x, 24, 24).unwrap(),
            &mut RgbMut::try_new(y, 24, 24).unwrap(),
        )
        .unwrap();
        assert!(b.view(0, 0) == &want[..24 * 24 * 3] && b.view(0, 1) == &want[24 * 24 * 3..]);
    }
    let epoch = |e: u64| -> Vec<u8> {
        batches.iter().filter(|b| b.cursor.epoch == e).flat_map(|b| b.pixels().to_vec()).collect()
    };
    assert_eq!(epoch(0), epoch(2), "epoch 2 serves variant 0 again");
    assert_ne!(epoch(0), epoch(1));
    for e in 0..3 {
        let mut keys: Vec<&str> = batches
            .iter()
            .filter(|b| b.cursor.epoch == e)
            .flat_map(|b| b.rows.iter().map(|&r| variants[(e % 2) as usize].row(r).unwrap().key))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 28, "each image at most once per epoch");
    }
}

/// The file mapped at address `addr` in this process (/proc/self/maps), if any.
fn mapped_file_at(addr: usize) -> Option<String> {
    std::fs::read_to_string("/proc/self/maps").ok()?.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (lo, hi) = f.next()?.split_once('-')?;
        let (lo, hi) = (usize::from_str_radix(lo, 16).ok()?, usize::from_str_radix(hi, 16).ok()?);
        (lo <= addr && addr < hi).then(|| f.nth(4).unwrap_or("").to_owned())
    })
}

/// A textured JPEG, different for each `i`.
fn textured_jpeg(i: u32, w: u32, h: u32) -> Vec<u8> {
    let data = (0..h)
        .flat_map(|y| {
            (0..w).flat_map(move |x| {
                [(x * 3 + i * 17) as u8, (y * 5 + i * 7) as u8, ((x * y) ^ i) as u8]
            })
        })
        .collect();
    let mut out = Vec::new();
    JpegEncoder::new()
        .encode(RgbImage::try_from_vec(data, w, h).unwrap().view(), 90, &mut out)
        .unwrap();
    out
}

/// A one-shard set of JPEG rows.
fn jpeg_rows_set(dir: &Path, rows: &[Vec<u8>]) -> ShardSet {
    std::fs::create_dir_all(dir).unwrap();
    let mut w = ShardWriter::create(&dir.join("train-00000-of-00001.arrow"), 5).unwrap();
    for (i, pixels) in rows.iter().enumerate() {
        let key = format!("c/{i}.jpg");
        let row =
            Row { key: &key, label: 0, height: 40, width: 48, encoding: Encoding::Jpeg, pixels };
        w.push(&row).unwrap();
    }
    let info = w.finish().unwrap();
    let n = rows.len() as u64;
    let mut m = Manifest::new("test", vec!["c".into()], serde_json::json!({}));
    m.splits.insert("train".into(), SplitManifest { inputs: n, rows: n, shards: vec![info] });
    m.save(dir).unwrap();
    ShardSet::open(dir, "train").unwrap()
}

#[test]
fn a_damaged_jpeg_row_never_changes_the_next_rows_pixels() {
    // Every other row damaged (a cut inside the Huffman tables -- what left libjpeg mid-header
    // --, a cut in the scan, no quantization tables, bytes that are no JPEG), each followed by
    // good rows on the same workers. Against a set where the damaged rows are good images
    // instead: every sample from a good row is the same, byte for byte.
    let dir = tempfile::tempdir().unwrap();
    let sample = textured_jpeg(99, 48, 40);
    let dht = sample.windows(2).position(|w| w == [0xFF, 0xC4]).unwrap();
    let dqt = sample.windows(2).position(|w| w == [0xFF, 0xDB]).unwrap();
    let dqt_len = u16::from_be_bytes([sample[dqt + 2], sample[dqt + 3]]) as usize + 2;
    let mut no_dqt = sample[..dqt].to_vec();
    no_dqt.extend_from_slice(&sample[dqt + dqt_len..]);
    let damaged = [
        sample[..dht + 20].to_vec(),
        sample[..sample.len() * 2 / 3].to_vec(),
        no_dqt,
        vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3],
    ];
    let n = 32u32;
    let good: Vec<Vec<u8>> = (0..n).map(|i| textured_jpeg(i, 48, 40)).collect();
    let mixed: Vec<Vec<u8>> = (0..n as usize)
        .map(|i| if i % 2 == 1 { damaged[i / 2 % damaged.len()].clone() } else { good[i].clone() })
        .collect();
    let clean = jpeg_rows_set(&dir.path().join("clean"), &good);
    let mixed = jpeg_rows_set(&dir.path().join("mixed"), &mixed);
    let c = LoaderConfig { on_bad_row: BadRowPolicy::Replace, end_epoch: Some(2), ..cfg(8, 3) };
    let view_bytes = 24 * 24 * 3;
    let run = |set: &ShardSet| {
        let mut loader =
            Loader::new(set.clone(), Recipe::mocov3_vit(), c.clone(), Arc::new(HeapAlloc)).unwrap();
        let mut slots = Vec::new();
        while let Some(b) = loader.next_batch() {
            let b = b.unwrap();
            for (j, &row) in b.rows.iter().enumerate() {
                slots
                    .push((row, b.pixels()[j * 2 * view_bytes..(j + 1) * 2 * view_bytes].to_vec()));
            }
        }
        (slots, loader.stats().replaced)
    };
    let (want, replaced_clean) = run(&clean);
    let (got, replaced) = run(&mixed);
    assert_eq!(replaced_clean, 0);
    assert_eq!(
        replaced, n as u64,
        "the 16 damaged rows, in each of 2 epochs, and nothing else are replaced"
    );
    assert_eq!(want.len(), got.len());
    let mut compared = 0;
    for (k, ((wr, wp), (gr, gp))) in want.iter().zip(&got).enumerate() {
        if wr == gr {
            assert!(wp == gp, "sample {k} (row {wr}): other pixels after a damaged row");
            compared += 1;
        } else {
            assert_eq!(
                (wr % 2, *gr),
                (1, (wr + 1) % n as u64),
                "sample {k}: replaced by the next row"
            );
        }
    }
    assert_eq!(compared, n as usize, "every good row compared, in both epochs");
}

#[test]
fn both_loaders_refuse_the_same_bad_configurations_naming_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let set = shard_set(dir.path(), 30, StoreEncoding::Raw);
    let shards = set.dir().to_owned();
    let vs = views_settings(1);
    prep::write_views(&shards, &vs, &AtomicBool::new(false), |_, _| {}).unwrap();
    let bad = [
        (LoaderConfig { batch_size: 0, ..cfg(4, 1) }, "need batch_size > 0"),
        (LoaderConfig { rank: 2, world: 2, ..cfg(4, 1) }, "rank 2 of 2"),
        (LoaderConfig { world: 4, ..cfg(8, 1) }, "30 rows over 4 ranks make no full batch of 8"),
    ];
    for (c, want) in bad {
        let on_the_fly =
            Loader::new(set.clone(), Recipe::mocov3_vit(), c.clone(), Arc::new(HeapAlloc))
                .err()
                .unwrap()
                .to_string();
        let views = Loader::from_views(&shards, "train", c).err().unwrap().to_string();
        assert!(on_the_fly.contains(want), "{on_the_fly}");
        assert!(views.contains(want), "{views}");
    }
    let err =
        Loader::from_views(&shards, "train", LoaderConfig { end_epoch: Some(1), ..cfg(4, 1) });
    assert!(err.is_ok(), "a good configuration starts");
    let err = Loader::from_views(&shards, "val", cfg(4, 1)).err().unwrap().to_string();
    assert!(err.contains("no offline views of split \"val\""), "{err}");
}

#[test]
fn the_training_loader_drops_the_last_partial_batch_by_default() {
    // As moco-v3's DataLoader(drop_last=True); `train` builds its loader from LoaderConfig::new.
    assert!(LoaderConfig::new(8, 32).drop_last);
    let dir = tempfile::tempdir().unwrap();
    let set = shard_set(dir.path(), 30, StoreEncoding::Raw);
    let c = LoaderConfig { end_epoch: Some(1), ..cfg(8, 1) };
    let batches: Vec<Batch> = Loader::new(set, Recipe::mocov3_vit(), c, Arc::new(HeapAlloc))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        batches.iter().map(|b| b.len).collect::<Vec<_>>(),
        [8, 8, 8],
        "30 rows: 3 full batches"
    );
}

#[test]
fn deferred_photometric_batches_carry_each_sample_s_draws_on_any_thread_count() {
    use crate::augment::{Photometric, device};
    let dir = tempfile::tempdir().unwrap();
    let set = shard_set(dir.path(), 21, StoreEncoding::Raw);
    let deferred = |threads| LoaderConfig { photometric: Photometric::Deferred, ..cfg(4, threads) };
    let batches = |c: LoaderConfig| -> Vec<(Vec<u64>, Vec<u8>, Vec<f32>)> {
        Loader::new(set.clone(), Recipe::mocov3_vit(), c, Arc::new(HeapAlloc))
            .unwrap()
            .map(|b| {
                let b = b.unwrap();
                (b.rows.clone(), b.pixels().to_vec(), b.photometric.clone())
            })
            .collect()
    };
    let one = batches(deferred(1));
    let bits = |v: &[(Vec<u64>, Vec<u8>, Vec<f32>)]| -> Vec<(Vec<u64>, Vec<u8>, Vec<u32>)> {
        v.iter()
            .map(|(r, p, f)| (r.clone(), p.clone(), f.iter().map(|x| x.to_bits()).collect()))
            .collect()
    };
    assert!(
        bits(&one) == bits(&batches(deferred(3))),
        "deferred batches differ between 1 and 3 threads"
    );
    // Each sample's numbers are what the augmenter draws for its (seed, epoch, row): the same
    // stream as the CPU path, so the crops agree too (the CPU bytes differ by the photometric
    // steps only).
    let here = collect(&set, cfg(4, 1));
    let mut aug = crate::augment::Augmenter::new();
    for ((rows, px, params), (cursor, rows2, _, cpu_px)) in one.iter().zip(&here) {
        assert_eq!(rows, rows2);
        assert_eq!(params.len(), rows.len() * device::SAMPLE_FLOATS);
        assert_eq!(px.len(), cpu_px.len());
        for (i, &row) in rows.iter().enumerate() {
            let r = set.row(row).unwrap();
            let src = crate::RgbRef::try_new(r.pixels, r.width as u32, r.height as u32).unwrap();
            let (mut a, mut b) = (vec![0u8; 24 * 24 * 3], vec![0u8; 24 * 24 * 3]);
            let logs = aug
                .two_views_with(
                    &Recipe::mocov3_vit(),
                    src,
                    (5, cursor.epoch, row),
                    &mut crate::RgbMut::try_new(&mut a, 24, 24).unwrap(),
                    &mut crate::RgbMut::try_new(&mut b, 24, 24).unwrap(),
                    Photometric::Deferred,
                )
                .unwrap();
            let mut want = vec![0f32; device::SAMPLE_FLOATS];
            device::encode(&logs, &mut want);
            let got = &params[i * device::SAMPLE_FLOATS..][..device::SAMPLE_FLOATS];
            assert!(got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()), "row {row}");
            assert_eq!(&px[i * 2 * a.len()..][..a.len()], &a[..], "row {row} view 1");
        }
    }
    // The CPU path ships nothing.
    let b = Loader::new(set.clone(), Recipe::mocov3_vit(), cfg(4, 1), Arc::new(HeapAlloc))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert!(b.photometric.is_empty());
}

#[test]
fn jpeg_rows_decode_dct_scaled_where_both_crops_allow_it_and_stay_close_to_a_full_decode() {
    let dir = tempfile::tempdir().unwrap();
    // Rows stored at short side 40, views of 8 px: a crop of 16+ px decodes at 1/2, 32+ at 1/4.
    let set = shard_set(dir.path(), 30, StoreEncoding::Jpeg);
    let c = |dct_scaled_decode, threads| LoaderConfig {
        dct_scaled_decode,
        threads,
        prefetch: 2,
        seed: 5,
        end_epoch: Some(1),
        // Crop, resize and flip only: the comparison is of the resampling.
        photometric: Photometric::Deferred,
        ..LoaderConfig::new(5, 8)
    };
    let full = collect(&set, c(false, 1));
    let scaled = collect(&set, c(true, 1));
    assert!(collect(&set, c(true, 2)) == scaled, "the same bytes on any thread count");
    let (mut n, mut changed, mut sum, mut worst) = (0u64, 0u64, 0u64, 0u8);
    for (f, s) in full.iter().zip(&scaled) {
        assert_eq!((f.0, &f.1, &f.2), (s.0, &s.1, &s.2), "the same batches");
        for (a, b) in f.3.iter().zip(&s.3) {
            let d = a.abs_diff(*b);
            (n, sum, worst) = (n + 1, sum + u64::from(d), worst.max(d));
            changed += u64::from(d > 0);
        }
    }
    let mean = sum as f64 / n as f64;
    eprintln!(
        "dct-scaled vs full decode: {changed} of {n} bytes differ, mean {mean:.3}, worst {worst}"
    );
    assert!(changed > 0, "no row was decoded scaled");
    assert!(mean < 3.0, "mean difference {mean:.3} levels");
}
