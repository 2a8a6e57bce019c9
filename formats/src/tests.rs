//! Writer → mmap reader → set, and what happens to damaged files.

use std::path::{Path, PathBuf};

use super::*;

/// (key, label, height, width, encoding, pixels)
type OwnedRow = (String, i32, u16, u16, Encoding, Vec<u8>);

/// Deterministic rows of varied shapes and both encodings.
fn sample_rows(n: usize) -> Vec<OwnedRow> {
    (0..n)
        .map(|i| {
            let (h, w) = (1 + (i % 7) as u16, 1 + (i % 5) as u16);
            if i % 4 == 3 {
                let mut jpeg = vec![0xFF, 0xD8];
                jpeg.extend((0..i as u8).map(|b| b.wrapping_mul(31)));
                (format!("c{}/img{i:04}.JPEG", i % 3), (i % 3) as i32, h, w, Encoding::Jpeg, jpeg)
            } else {
                let px = (0..h as usize * w as usize * 3).map(|b| (b * 7 + i) as u8).collect();
                (
                    format!("c{}/img{i:04}.JPEG", i % 3),
                    (i % 3) as i32 - (i == 5) as i32 * 3,
                    h,
                    w,
                    Encoding::RawRgb,
                    px,
                )
            }
        })
        .collect()
}

fn write_shard(path: &Path, rows: &[OwnedRow], batch_rows: usize) -> ShardInfo {
    let mut w = ShardWriter::create(path, batch_rows).unwrap();
    for (key, label, h, wd, enc, px) in rows {
        w.push(&Row { key, label: *label, height: *h, width: *wd, encoding: *enc, pixels: px })
            .unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn rows_round_trip_through_the_map_without_copies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train-00000-of-00001.arrow");
    let rows = sample_rows(50);
    let info = write_shard(&path, &rows, 16);
    assert_eq!(info.rows, 50);
    assert_eq!(info.bytes, std::fs::metadata(&path).unwrap().len());
    assert_eq!(info.checksum, file_checksum(&path).unwrap());
    let names: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "temp file left behind: {names:?}");

    let shard = Shard::open(&path).unwrap();
    assert_eq!((shard.num_rows(), shard.num_batches()), (50, 4));
    let map = shard.mapped_bytes().as_ptr_range();
    for (i, (key, label, h, w, enc, px)) in rows.iter().enumerate() {
        let row = shard.row(i as u64).unwrap();
        assert_eq!(
            (row.key, row.label, row.height, row.width, row.encoding),
            (key.as_str(), *label, *h, *w, *enc)
        );
        assert_eq!(row.pixels, px.as_slice());
        assert!(map.contains(&row.pixels.as_ptr()), "row {i}: pixels were copied out of the map");
    }
    assert!(matches!(shard.row(50), Err(Error::RowOutOfRange { index: 50, rows: 50 })));
}

#[test]
fn same_rows_give_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let rows = sample_rows(20);
    let a = write_shard(&dir.path().join("a.arrow"), &rows, 8);
    let b = write_shard(&dir.path().join("b.arrow"), &rows, 8);
    assert_eq!(a.checksum, b.checksum);
    assert_eq!(
        std::fs::read(dir.path().join("a.arrow")).unwrap(),
        std::fs::read(dir.path().join("b.arrow")).unwrap()
    );
}

#[test]
fn invalid_rows_are_refused_and_an_abandoned_writer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.arrow");
    let mut w = ShardWriter::create(&path, 4).unwrap();
    let bad = Row {
        key: "k",
        label: 0,
        height: 2,
        width: 2,
        encoding: Encoding::RawRgb,
        pixels: &[0; 11],
    };
    let err = w.push(&bad).unwrap_err().to_string();
    assert!(err.contains("\"k\"") && err.contains("12 bytes"), "{err}");
    drop(w);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "temp file left behind");
}

/// Every truncation and a sweep of byte flips give an error or (for bytes inside pixel data)
/// a readable shard — never a panic. The checksum catches what the structure cannot.
#[test]
fn damaged_shards_are_errors_naming_the_file_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train-00000-of-00001.arrow");
    let info = write_shard(&path, &sample_rows(30), 8);
    let good = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad.arrow");

    let mut cuts: Vec<usize> = (0..good.len()).step_by(97).collect();
    cuts.extend([good.len() - 1, good.len() - 10, good.len() - 11, 0, 5]);
    for cut in cuts {
        std::fs::write(&bad, &good[..cut]).unwrap();
        let err = Shard::open(&bad).expect_err(&format!("truncated at {cut} opened"));
        assert!(err.to_string().contains("bad.arrow"), "cut {cut}: {err}");
    }

    let mut structural = 0;
    for pos in (0..good.len()).step_by(13) {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut bytes = good.clone();
            bytes[pos] ^= flip;
            std::fs::write(&bad, &bytes).unwrap();
            match Shard::open(&bad) {
                Err(e) => {
                    structural += 1;
                    assert!(e.to_string().contains("bad.arrow"), "flip at {pos}: {e}");
                }
                Ok(shard) => {
                    // Reading every row must stay in bounds.
                    for row in shard.rows() {
                        assert!(row.check().is_ok());
                    }
                    assert_ne!(
                        file_checksum(&bad).unwrap(),
                        info.checksum,
                        "flip at {pos} unseen by the checksum"
                    );
                }
            }
        }
    }
    assert!(structural > 0);
}

#[test]
fn a_set_indexes_rows_across_shards_and_checks_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let rows = sample_rows(45);
    let mut manifest = Manifest::new(
        "test",
        vec!["c0".into(), "c1".into(), "c2".into()],
        serde_json::json!({"k": 1}),
    );
    let mut split = SplitManifest { inputs: 45, rows: 45, shards: vec![] };
    for (s, chunk) in rows.chunks(20).enumerate() {
        let file = format!("train-{s:05}-of-00003.arrow");
        split.shards.push(write_shard(&dir.path().join(file), chunk, 6));
    }
    manifest.splits.insert("train".into(), split);
    manifest.save(dir.path()).unwrap();
    assert_eq!(Manifest::load(dir.path()).unwrap(), manifest);

    let set = ShardSet::open(dir.path(), "train").unwrap();
    assert_eq!(set.len(), 45);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(set.row(i as u64).unwrap().key, r.0);
    }
    assert_eq!(set.locate(20).unwrap(), (1, 0));
    set.verify_checksums().unwrap();
    let err = ShardSet::open(dir.path(), "val").unwrap_err().to_string();
    assert!(err.contains("no split \"val\"") && err.contains("train"), "{err}");

    // A shard changed after the manifest was written.
    let victim: PathBuf = dir.path().join("train-00001-of-00003.arrow");
    let mut bytes = std::fs::read(&victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let err = ShardSet::open(dir.path(), "train").and_then(|s| s.verify_checksums());
    let msg = err.unwrap_err().to_string();
    assert!(msg.contains("train-00001-of-00003.arrow"), "{msg}");
}

#[test]
fn sets_with_other_classes_are_refused_and_shard_names_stay_in_the_folder() {
    let rows = sample_rows(10);
    let make = |dir: &Path, classes: &[&str], file: &str| {
        let mut m = Manifest::new(
            "test",
            classes.iter().map(|c| c.to_string()).collect(),
            serde_json::json!({}),
        );
        let info = write_shard(&dir.join("train-00000-of-00001.arrow"), &rows, 4);
        let info = ShardInfo { file: file.into(), ..info };
        m.splits.insert("train".into(), SplitManifest { inputs: 10, rows: 10, shards: vec![info] });
        m.save(dir).unwrap();
    };
    let (a, b, c) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "train-00000-of-00001.arrow";
    make(a.path(), &["c0", "c1", "c2"], name);
    make(b.path(), &["c0", "c2", "c1"], name);
    make(c.path(), &["c0", "c1", "c2", "c3"], name);
    let open = |d: &tempfile::TempDir| ShardSet::open(d.path(), "train").unwrap();
    open(&a).check_same_classes(&open(&a)).unwrap();
    let e = open(&a).check_same_classes(&open(&b)).unwrap_err().to_string();
    assert!(
        e.contains(&a.path().join("manifest.json").display().to_string())
            && e.contains(&b.path().join("manifest.json").display().to_string())
            && e.contains("label 1 is \"c1\" in the first and \"c2\" in the second"),
        "{e}"
    );
    let e = open(&a).check_same_classes(&open(&c)).unwrap_err().to_string();
    assert!(e.contains("label 3 is nothing in the first and \"c3\""), "{e}");
    // A manifest naming a shard outside its folder is refused before anything is opened.
    for bad in ["../x.arrow", "/etc/passwd", "sub/train.arrow", "notes.txt"] {
        make(a.path(), &["c0"], bad);
        let e = ShardSet::open(a.path(), "train").unwrap_err().to_string();
        assert!(e.contains("manifest.json") && e.contains("not a plain"), "{bad}: {e}");
    }
}

#[test]
fn a_locked_folder_is_refused_naming_the_holder_and_freed_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let held = lock_dir(&run, "trainer").unwrap();
    let e = lock_dir(&run, "trainer").unwrap_err().to_string();
    assert!(
        e.contains(&run.display().to_string())
            && e.contains(&format!("trainer (pid {})", std::process::id())),
        "{e}"
    );
    drop(held);
    lock_dir(&run, "trainer").expect("free again after drop");
}
