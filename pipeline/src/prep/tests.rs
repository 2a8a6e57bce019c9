//! prep on small synthetic datasets: layouts, determinism across threads, skips, resume.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use twoview_formats::{Encoding, ShardSet};

use super::*;
use crate::RgbImage;

fn jpeg(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let data = (0..h)
        .flat_map(|y| {
            (0..w).flat_map(move |x| {
                [(x * 7 + seed) as u8, (y * 5 + seed * 3) as u8, ((x ^ y) + seed) as u8]
            })
        })
        .collect();
    let img = RgbImage::try_from_vec(data, w, h).unwrap();
    let mut out = Vec::new();
    JpegEncoder::new().encode(img.view(), 90, &mut out).unwrap();
    out
}

fn put(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// ROOT/train/<3 classes>/… with odd files, and ROOT/val either per class or flat.
fn imagenet_like(root: &Path, flat_val: bool) {
    let classes = ["n01", "n02", "n03"];
    for (c, class) in classes.iter().enumerate() {
        for i in 0..7u32 {
            let (w, h) = (60 + 13 * i, 40 + 11 * c as u32);
            put(&root.join(format!("train/{class}/img{i}.JPEG")), &jpeg(w, h, i + 10 * c as u32));
        }
        put(&root.join(format!("train/{class}/notes.txt")), b"not an image");
        if flat_val {
            put(&root.join(format!("val/v{c}.JPEG")), &jpeg(50, 50, c as u32));
        } else {
            put(&root.join(format!("val/{class}/v{c}.jpg")), &jpeg(50, 50, c as u32));
        }
    }
    // Odd inputs: empty, truncated, not an image, and a PNG named .JPEG.
    put(&root.join("train/n01/empty.JPEG"), b"");
    let j = jpeg(80, 60, 99);
    put(&root.join("train/n02/truncated.JPEG"), &j[..j.len() / 2]);
    put(&root.join("train/n03/text.jpg"), b"hello, I am text");
    let mut png = Vec::new();
    image::RgbImage::from_raw(30, 20, vec![128; 30 * 20 * 3])
        .unwrap()
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    put(&root.join("train/n03/png.JPEG"), &png);
}

fn opts() -> PrepOptions {
    PrepOptions { fit: Fit::ShortSide(48), rows_per_shard: 8, batch_rows: 3, ..Default::default() }
}

fn run_quiet(scan: &Scan, out: &Path, opts: &PrepOptions) -> Result<PrepSummary, Error> {
    run(scan, out, opts, "test", &AtomicBool::new(false), |_| {})
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn imagenet_layout_with_class_val_and_odd_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    imagenet_like(&root, false);
    let scan = scan(&root, SplitSelection::All, None).unwrap();
    assert_eq!(scan.layout, Layout::ImageNet);
    assert_eq!(scan.classes, ["n01", "n02", "n03"]);
    assert_eq!(scan.splits["train"].len(), 21 + 4);
    assert_eq!(scan.ignored_files, 3);
    let out = dir.path().join("shards");
    let s = run_quiet(&scan, &out, &opts()).unwrap();
    assert_eq!((s.inputs["train"], s.rows["train"], s.rows["val"]), (25, 22, 3));
    assert_eq!(s.skipped.len(), 3);
    assert_eq!(s.png_inputs, 1);
    let kinds: Vec<_> =
        s.skipped.iter().map(|k| (k.key.as_str(), k.reason.split(':').next().unwrap())).collect();
    assert_eq!(
        kinds,
        [
            ("train/n01/empty.JPEG", "empty"),
            ("train/n02/truncated.JPEG", "truncated"),
            ("train/n03/text.jpg", "not an image")
        ]
    );

    let set = ShardSet::open(&out, "train").unwrap();
    assert_eq!(set.len(), 22);
    assert_eq!(set.manifest().skipped.len(), 3);
    assert_eq!(set.shards().len(), 4, "25 inputs / 8 per shard");
    let keys: Vec<&str> = (0..set.len()).map(|i| set.row(i).unwrap().key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "rows in sorted key order");
    for i in 0..set.len() {
        let r = set.row(i).unwrap();
        assert_eq!(r.encoding, Encoding::RawRgb);
        assert!(r.height.min(r.width) <= 48);
        let class = r.key.split('/').nth(1).unwrap();
        assert_eq!(set.manifest().classes[r.label as usize], class);
    }
    // 60x40: short side 40 < 48, never upscaled. 138x62 -> short 48, long int(48*138/62) = 106.
    let small = (0..set.len())
        .map(|i| set.row(i).unwrap())
        .find(|r| r.key == "train/n01/img0.JPEG")
        .unwrap();
    assert_eq!((small.width, small.height), (60, 40));
    let big = (0..set.len())
        .map(|i| set.row(i).unwrap())
        .find(|r| r.key == "train/n03/img6.JPEG")
        .unwrap();
    assert_eq!((big.width, big.height), (106, 48));
}

#[test]
fn flat_val_with_labels_files_and_class_folders_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    imagenet_like(&root, true);
    let err = scan(&root, SplitSelection::Val, None).unwrap_err().to_string();
    assert!(err.contains("--val-labels"), "{err}");
    // Kaggle's CSV: ImageId,PredictionString (first word is the class).
    put(
        &root.join("LOC_val_solution.csv"),
        b"ImageId,PredictionString\nv0,n01 1 2 3 4\nv1,n02 5 6 7 8 n02 1 1 1 1\nv2,n03 0 0 1 1\n",
    );
    let s = scan(&root, SplitSelection::Val, None).unwrap();
    let labels: Vec<i32> = s.splits["val"].iter().map(|i| i.label).collect();
    assert_eq!(labels, [0, 1, 2]);
    assert!(!s.splits.contains_key("train"));
    // path<TAB>class, classes by name or index.
    let tsv = dir.path().join("labels.tsv");
    put(&tsv, b"val/v0.JPEG\tn03\nv1.JPEG\t0\nv2.JPEG\tn02\n");
    let s = scan(&root, SplitSelection::Val, Some(&tsv)).unwrap();
    assert_eq!(s.splits["val"].iter().map(|i| i.label).collect::<Vec<_>>(), [2, 0, 1]);
    put(&tsv, b"v0.JPEG\tn09\n");
    let err = scan(&root, SplitSelection::Val, Some(&tsv)).unwrap_err().to_string();
    assert!(err.contains("labels.tsv:1") && err.contains("n09"), "{err}");

    // A plain folder of class folders is one split, "train".
    let plain = root.join("train");
    let s = scan(&plain, SplitSelection::All, None).unwrap();
    assert_eq!(s.layout, Layout::ClassFolders);
    assert_eq!(s.splits.keys().collect::<Vec<_>>(), ["train"]);
    assert!(s.splits["train"].iter().all(|i| i.key.starts_with("n0")));

    // Kaggle nesting: ROOT/ILSVRC/Data/CLS-LOC/{train,val}.
    let kaggle = dir.path().join("kaggle");
    std::fs::create_dir_all(kaggle.join("ILSVRC/Data")).unwrap();
    std::fs::rename(&root, kaggle.join("ILSVRC/Data/CLS-LOC")).unwrap();
    put(
        &kaggle.join("LOC_val_solution.csv"),
        b"ImageId,PredictionString\nv0,n01 1\nv1,n01 1\nv2,n01 1\n",
    );
    let s = scan(&kaggle, SplitSelection::All, None).unwrap();
    assert_eq!((s.splits["train"].len(), s.splits["val"].len()), (25, 3));
    assert!(s.splits["val"][0].key.starts_with("ILSVRC/Data/CLS-LOC/val/"));
}

#[test]
fn same_bytes_on_any_thread_count_and_shuffle_is_a_fixed_permutation() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    imagenet_like(&root, false);
    let scan = scan(&root, SplitSelection::All, None).unwrap();
    for encoding in [StoreEncoding::Raw, StoreEncoding::Jpeg] {
        let o = PrepOptions { encoding, shuffle_seed: Some(7), ..opts() };
        let mut outputs = Vec::new();
        for threads in [1, 3] {
            let out = dir.path().join(format!("out-{encoding:?}-{threads}"));
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| run_quiet(&scan, &out, &o)).unwrap();
            outputs.push(files(&out));
        }
        assert_eq!(outputs[0], outputs[1], "{encoding:?}: bytes differ between 1 and 3 threads");
        let set = ShardSet::open(&dir.path().join(format!("out-{encoding:?}-1")), "train").unwrap();
        let keys: Vec<&str> = (0..set.len()).map(|i| set.row(i).unwrap().key).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_ne!(keys, sorted, "shuffled order");
        assert!(set.shards()[0].rows().all(|r| r.encoding
            == if encoding == StoreEncoding::Raw { Encoding::RawRgb } else { Encoding::Jpeg }));
    }
}

#[test]
fn an_interrupted_prep_resumes_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    imagenet_like(&root, false);
    let scan = scan(&root, SplitSelection::All, None).unwrap();
    let o = opts();
    let whole = dir.path().join("whole");
    run_quiet(&scan, &whole, &o).unwrap();

    let out = dir.path().join("interrupted");
    // Stop after the 5th progress report (inside the second shard).
    let stop = AtomicBool::new(false);
    let mut calls = 0;
    let err = run(&scan, &out, &o, "test", &stop, |_| {
        calls += 1;
        if calls == 5 {
            stop.store(true, Ordering::Relaxed);
        }
    })
    .unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err}");
    assert!(!out.join("manifest.json").exists());
    let shard_files: Vec<_> = files(&out).into_iter().map(|(n, _)| n).collect();
    assert_eq!(shard_files, ["train-00000-of-00004.arrow"], "one finished shard, no temp files");

    // A different command on the same folder is refused.
    let other = PrepOptions { quality: 50, ..o.clone() };
    let err = run_quiet(&scan, &out, &other).unwrap_err().to_string();
    assert!(err.contains("unfinished prep"), "{err}");

    let s = run_quiet(&scan, &out, &o).unwrap();
    assert_eq!((s.shards_resumed, s.shards_written), (1, 4));
    assert_eq!(files(&out), files(&whole), "resumed output differs from an uninterrupted one");
    assert!(!out.join(STATE_DIR).exists());

    // Once complete, the same command has nothing to do; another is refused.
    assert!(run_quiet(&scan, &out, &o).unwrap().already_complete);
    let err = run_quiet(&scan, &out, &other).unwrap_err().to_string();
    assert!(err.contains("different prep"), "{err}");
}
