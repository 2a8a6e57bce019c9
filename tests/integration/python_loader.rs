//! The Python bindings' loader (`twoview.Loader`, bindings/) hands out the Rust loader's bytes:
//! the same batches, rows, labels and cursors for the same seed, rank and start cursor.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use twoview_formats::ShardSet;
use twoview_pipeline::augment::Recipe;
use twoview_pipeline::loader::{Cursor, HeapAlloc, Loader, LoaderConfig};
use twoview_pipeline::prep::{self, PrepOptions, SplitSelection};
use twoview_pipeline::resize::Fit;

use crate::support;

#[test]
fn python_loader_hands_out_the_rust_loader_s_batches() {
    let Some(imagenette) = support::imagenette() else { return };
    let work = support::scratch_dir("python_loader");
    let root = work.join("root");
    for p in support::imagenette_sample(&imagenette, 3, 12) {
        let class = p.parent().unwrap().file_name().unwrap();
        std::fs::create_dir_all(root.join(class)).unwrap();
        std::os::unix::fs::symlink(&p, root.join(class).join(p.file_name().unwrap())).unwrap();
    }
    let shards = work.join("shards");
    let scan = prep::scan(&root, SplitSelection::All, None).unwrap();
    let opts = PrepOptions { fit: Fit::ShortSide(72), rows_per_shard: 10, ..Default::default() };
    prep::run(&scan, &shards, &opts, "test", &AtomicBool::new(false), |_| {}).unwrap();

    let (batch, size, seed, world, rank, batches) = (6usize, 40u32, 11u64, 2u64, 1u64, 7usize);
    let start = Cursor { epoch: 1, batch: 1 };
    let mut cfg = LoaderConfig::new(batch, size);
    (cfg.seed, cfg.world, cfg.rank, cfg.start, cfg.threads) = (seed, world, rank, start, 2);
    let set = ShardSet::open(&shards, "train").unwrap();
    let loader = Loader::new(set, Recipe::mocov3_vit(), cfg, Arc::new(HeapAlloc)).unwrap();
    let (mut want_px, mut want_meta) = (Vec::new(), Vec::new());
    for b in loader.take(batches) {
        let b = b.unwrap();
        want_px.extend_from_slice(b.pixels());
        let c = |c: Cursor| serde_json::json!({"epoch": c.epoch, "batch": c.batch});
        want_meta.push(serde_json::json!({
            "rows": b.rows, "labels": b.labels, "cursor": c(b.cursor), "next_cursor": c(b.next_cursor),
        }));
    }

    let out = work.join("py");
    let n = |v: u64| v.to_string();
    let args = [
        ("--batch-size", n(batch as u64)),
        ("--size", n(size as u64)),
        ("--seed", n(seed)),
        ("--rank", n(rank)),
        ("--world-size", n(world)),
        ("--epoch", n(start.epoch)),
        ("--batch", n(start.batch)),
        ("--batches", n(batches as u64)),
        ("--threads", n(3)),
    ];
    let mut argv: Vec<std::ffi::OsString> = vec![shards.clone().into(), out.clone().into()];
    for (k, v) in args {
        argv.push(k.into());
        argv.push(v.into());
    }
    let argv: Vec<&std::ffi::OsStr> = argv.iter().map(|a| a.as_os_str()).collect();
    support::venv_python("loader_batches.py", &argv).unwrap();
    let got_meta: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(got_meta.len(), batches);
    for (i, (w, g)) in want_meta.iter().zip(&got_meta).enumerate() {
        assert_eq!(w, g, "batch {i}: rows/labels/cursors differ (Rust | Python)");
    }
    let got_px = std::fs::read(out.with_extension("bin")).unwrap();
    assert_eq!(got_px.len(), want_px.len());
    let per = batch * 2 * (size * size * 3) as usize;
    for i in 0..batches {
        let r = i * per..(i + 1) * per;
        assert!(
            got_px[r.clone()] == want_px[r],
            "batch {i}: pixels differ between Rust and Python"
        );
    }
    std::fs::remove_dir_all(&work).unwrap();
}
