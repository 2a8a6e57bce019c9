//! Helpers shared by the CLI test binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The binary under test, started without `LD_LIBRARY_PATH` (the rpath must find libtorch).
pub fn twoview() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twoview"));
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd
}

/// A fresh empty directory under the target dir, named for the test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// 96 synthetic 48×40 JPEGs in 4 class folders (train; plus 32 in val when `val`), each class
/// its own colour and stripe frequency, prepped into `base/shards` (short side 36).
#[allow(dead_code)] // not every test binary uses it
pub fn shards(base: &Path) -> PathBuf {
    shards_with(base, false)
}

#[allow(dead_code)]
pub fn shards_with(base: &Path, val: bool) -> PathBuf {
    use twoview_pipeline::RgbImage;
    use twoview_pipeline::decode::JpegEncoder;
    let root = base.join("images");
    let mut enc = JpegEncoder::new();
    let splits: &[(&str, u32)] = if val { &[("train", 96), ("val", 32)] } else { &[("train", 96)] };
    for &(split, n) in splits {
        for i in 0..n {
            let (w, h, class) = (48u32, 40u32, i % 4);
            let data = (0..h)
                .flat_map(|y| {
                    (0..w).flat_map(move |x| {
                        let stripe = ((x * (class + 1) + y * (i % 7)) / 4 % 2) as u8 * 120;
                        [stripe.wrapping_add((class * 60) as u8), (x * 5 + i) as u8, (y * 6) as u8]
                    })
                })
                .collect();
            let img = RgbImage::try_from_vec(data, w, h).unwrap();
            let mut jpeg = Vec::new();
            enc.encode(img.view(), 90, &mut jpeg).unwrap();
            let dir =
                if val { root.join(split) } else { root.clone() }.join(format!("n0000000{class}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("img{i:03}.JPEG")), jpeg).unwrap();
        }
    }
    let out = base.join("shards");
    let st = twoview()
        .args(["prep-shards", root.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--short-side", "36", "--threads", "1", "--split", "all"])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    out
}

/// A tiny ViT (32 px, patch 8, dim 32, 2 blocks), batch 16, deterministic threading.
#[allow(dead_code)]
pub const TINY: [&str; 20] = [
    "image_size=32",
    "patch=8",
    "dim=32",
    "depth=2",
    "heads=2",
    "mlp_dim=64",
    "out_dim=32",
    "batch_size=16",
    "base_lr=0.005",
    "epochs=20",
    "warmup_epochs=2",
    "threads=1",
    "torch_threads=1",
    "log_every=1",
    "checkpoint_every=4",
    "keep_checkpoints=2",
    "max_steps=60",
    "seed=7",
    "amp=off",
    "prefetch=2",
];

#[allow(dead_code)]
pub fn train_cmd(shards: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = twoview();
    cmd.args(["train", "--shards", shards.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    cmd.args(["--preset", "vit_tiny"]);
    for kv in TINY.iter().chain(extra) {
        cmd.args(["--set", kv]);
    }
    cmd
}

/// (step, loss) of every train line of RUN_DIR/metrics.jsonl, in file order.
#[allow(dead_code)]
pub fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}
