//! `twoview prep-shards` and `twoview shards` as a user runs them: kill -9 and resume, exit
//! codes, verify catching damage, and the whole imagenette224 train split.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use twoview_formats::Shard;
use twoview_pipeline::RgbImage;
use twoview_pipeline::decode::JpegEncoder;

mod common;
use common::{scratch, twoview};

/// `n` synthetic 400x300 JPEGs in 4 class folders (textured, so they take real decode work).
fn synthetic_root(root: &Path, n: u32) {
    let mut enc = JpegEncoder::new();
    for i in 0..n {
        let (w, h) = (400u32, 300u32);
        let data = (0..h)
            .flat_map(|y| {
                (0..w).flat_map(move |x| {
                    let v = x.wrapping_mul(2654435761u32 ^ i).wrapping_add(y * 40503) >> 24;
                    [v as u8, (x + i) as u8, (y * 3 + i) as u8]
                })
            })
            .collect();
        let img = RgbImage::try_from_vec(data, w, h).unwrap();
        let mut jpeg = Vec::new();
        enc.encode(img.view(), 90, &mut jpeg).unwrap();
        let dir = root.join(format!("class{}", i % 4));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("img{i:04}.JPEG")), jpeg).unwrap();
    }
}

fn arrow_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "arrow"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn all_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
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

const PREP_ARGS: &[&str] =
    &["--short-side", "128", "--rows-per-shard", "16", "--batch-rows", "4", "--threads", "2"];

#[test]
fn kill_9_at_any_moment_then_rerun_gives_the_same_shards() {
    let base = scratch("prep_kill");
    let root = base.join("root");
    synthetic_root(&root, 160);
    let whole = base.join("whole");
    let st = twoview()
        .arg("prep-shards")
        .arg(&root)
        .arg("--out")
        .arg(&whole)
        .args(PREP_ARGS)
        .status()
        .unwrap();
    assert!(st.success());

    let out = base.join("killed");
    let mut kills = 0;
    for round in 0..20 {
        let mut child = twoview()
            .arg("prep-shards")
            .arg(&root)
            .arg("--out")
            .arg(&out)
            .args(PREP_ARGS)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Let it make some progress (1 or 2 more shards), then SIGKILL, wherever it is.
        let before = arrow_files(&out).len();
        let target = before + 1 + round % 2;
        let start = Instant::now();
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if arrow_files(&out).len() >= target || start.elapsed() > Duration::from_secs(60) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        match finished {
            Some(status) => {
                assert!(status.success(), "prep-shards failed on round {round}: {status}");
                break;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
        }
        // Whatever moment it died at, every file under a shard name is a complete shard.
        for f in arrow_files(&out) {
            Shard::open(&f).unwrap_or_else(|e| panic!("after kill {kills}: {e}"));
        }
    }
    assert!(kills >= 3, "the job finished before it could be killed enough ({kills} kills)");
    assert_eq!(
        all_files(&out),
        all_files(&whole),
        "resumed shards differ from an uninterrupted run"
    );
}

#[test]
fn skipped_inputs_give_exit_3_and_are_listed() {
    let base = scratch("prep_skip");
    let root = base.join("root");
    synthetic_root(&root, 8);
    std::fs::write(root.join("class1/broken.JPEG"), b"\xff\xd8\xff\xe0 garbage").unwrap();
    std::fs::write(root.join("class2/empty.jpg"), b"").unwrap();
    let out = base.join("shards");
    let o = twoview()
        .arg("prep-shards")
        .arg(&root)
        .arg("--out")
        .arg(&out)
        .args(PREP_ARGS)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("SKIPPED 2 inputs")
            && stdout.contains("class1/broken.JPEG")
            && stdout.contains("class2/empty.jpg: empty"),
        "{stdout}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["skipped"].as_array().unwrap().len(), 2);
    assert_eq!(manifest["splits"]["train"]["rows"], 8);

    // Rerun: nothing to do, same exit code (the skips are still there).
    let o = twoview()
        .arg("prep-shards")
        .arg(&root)
        .arg("--out")
        .arg(&out)
        .args(PREP_ARGS)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stdout).contains("already complete"));
}

#[test]
fn verify_names_a_damaged_shard_and_show_writes_a_png() {
    let base = scratch("prep_verify");
    let root = base.join("root");
    synthetic_root(&root, 20);
    let out = base.join("shards");
    let st = twoview()
        .arg("prep-shards")
        .arg(&root)
        .arg("--out")
        .arg(&out)
        .args(PREP_ARGS)
        .args(["--encoding", "jpeg"])
        .status()
        .unwrap();
    assert!(st.success());
    let o = twoview().args(["shards", "verify"]).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let png = base.join("row.png");
    let o = twoview()
        .args(["shards", "show"])
        .arg(&out)
        .args(["--index", "5", "--out"])
        .arg(&png)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (170, 128));

    // Flip one byte in the middle of the second shard: verify fails and names it.
    let victim = &arrow_files(&out)[1];
    let mut bytes = std::fs::read(victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(victim, bytes).unwrap();
    let o = twoview().args(["shards", "verify"]).arg(&out).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAILED") && stdout.contains(victim.file_name().unwrap().to_str().unwrap()),
        "{stdout}"
    );
}

/// The Done-when check: the whole imagenette224 train split, then `shards verify`.
#[test]
fn whole_imagenette_train_split_preps_and_verifies() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/imagenette224");
    if !data.join("train").is_dir() {
        assert!(std::env::var_os("CI").is_none(), "CI must have {}", data.display());
        eprintln!("SKIP: {} is absent", data.display());
        return;
    }
    let out = scratch("prep_imagenette");
    let o = twoview()
        .arg("prep-shards")
        .arg(&data)
        .args(["--split", "train", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("train: 9469 of 9469 inputs stored"), "{stdout}");
    let o = twoview().args(["shards", "verify"]).arg(&out).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && stdout.contains("ok: 9469 rows"), "{stdout}");
    let _ = std::fs::remove_dir_all(&out); // 1.4 GB
}

#[test]
fn offline_views_are_written_verified_and_listed() {
    let base = scratch("prep_views");
    let root = base.join("root");
    synthetic_root(&root, 12);
    let out = base.join("shards");
    let o = twoview()
        .arg("prep-shards")
        .arg(&root)
        .arg("--out")
        .arg(&out)
        .args(PREP_ARGS)
        .args(["--views", "2", "--view-size", "32", "--view-batch-rows", "4"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("offline views: 2 variants of train (12 rows each) at 32x32"),
        "{stdout}"
    );
    let o = twoview().args(["shards", "verify"]).arg(&out).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && stdout.contains("ok: 36 rows in 3 splits"), "{stdout}");
}
