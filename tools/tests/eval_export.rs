//! `twoview eval knn`, `twoview eval linear` and `twoview export` on a briefly trained tiny
//! ViT: k-NN and the linear probe run on trained and random-init weights, and the exported
//! backbone loads into timm's VisionTransformer with strict loading and gives the Rust model's
//! features (relative error < 1e-5, fp32).

use std::path::Path;

mod common;
use common::{scratch, shards_with, train_cmd, twoview};

fn venv_python() -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must have {} (scripts/setup-venv.sh)",
        p.display()
    );
    eprintln!("SKIP: {} is absent; run scripts/setup-venv.sh", p.display());
    None
}

fn train_tiny(shards: &Path, out: &Path) {
    // The whole (3-epoch) schedule of the shared tiny configuration, no checkpoints on the way.
    let extra = ["epochs=3", "warmup_epochs=1", "max_steps=0", "checkpoint_every=0", "knn_every=0"];
    let o = train_cmd(shards, out, &extra).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("kNN top-1"), "train reports kNN on the val split at the end: {err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn eval(what: &str, run: &Path, shards: &Path, random: bool) -> serde_json::Value {
    let mut cmd = twoview();
    cmd.args(["eval", what, "--checkpoint", run.to_str().unwrap()]);
    if what == "linear" {
        cmd.args(["--epochs", "20", "--batch", "32"]);
    }
    cmd.args([
        "--train-shards",
        shards.to_str().unwrap(),
        "--val-shards",
        shards.to_str().unwrap(),
    ]);
    if random {
        cmd.arg("--random-init");
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn knn_and_timm_export_of_a_trained_checkpoint() {
    let base = scratch("eval_export");
    let shards = shards_with(&base, true);
    let run = base.join("run");
    train_tiny(&shards, &run);

    let trained = eval("knn", &run, &shards, false);
    let random = eval("knn", &run, &shards, true);
    assert_eq!(trained["val_images"], 32);
    assert_eq!(trained["step"], 18, "3 epochs of 6 batches");
    let probe = eval("linear", &run, &shards, false);
    let probe_random = eval("linear", &run, &shards, true);
    assert_eq!(probe["train_images"], 96);
    for r in [&trained, &random, &probe, &probe_random] {
        let (t1, t5) = (r["top1"].as_f64().unwrap(), r["top5"].as_f64().unwrap());
        assert!((0.0..=100.0).contains(&t1) && t5 >= t1, "{r}");
    }
    // Precision follows the eval device, not the run: a run whose plan says bf16 autocast (as a
    // CUDA bf16 run's does) is evaluated on the CPU in fp32 unless --precision says otherwise.
    assert_eq!(trained["precision"], "fp32");
    let bf16_run = base.join("bf16-run");
    let step_dir = twoview_model::checkpoint::resolve(&run).unwrap();
    let rel = step_dir.strip_prefix(&run).unwrap().to_owned();
    copy_dir(&run, &bf16_run);
    let state_path = bf16_run.join(&rel).join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state["plan"]["autocast"] = serde_json::json!(true);
    std::fs::write(&state_path, state.to_string()).unwrap();
    let as_cpu = eval("knn", &bf16_run, &shards, false);
    assert_eq!(as_cpu["precision"], "fp32", "{as_cpu}");
    assert_eq!((&as_cpu["top1"], &as_cpu["top5"]), (&trained["top1"], &trained["top5"]));

    // Val shards whose classes are in another order: labels would name other classes.
    let other = base.join("other-classes");
    std::fs::create_dir_all(&other).unwrap();
    for e in std::fs::read_dir(&shards).unwrap().flatten() {
        std::fs::copy(e.path(), other.join(e.file_name())).unwrap();
    }
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(other.join("manifest.json")).unwrap()).unwrap();
    m["classes"].as_array_mut().unwrap().reverse();
    std::fs::write(other.join("manifest.json"), m.to_string()).unwrap();
    let o = twoview()
        .args(["eval", "knn", "--checkpoint", run.to_str().unwrap(), "--train-shards"])
        .args([shards.as_os_str(), "--val-shards".as_ref(), other.as_os_str()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "mismatched classes accepted");
    assert!(
        err.contains("different classes") && err.contains("other-classes/manifest.json"),
        "{err}"
    );

    // The metrics' final kNN is the same evaluation as `eval knn` of the final checkpoint.
    let last_knn = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .rfind(|v| v["kind"] == "knn")
        .unwrap();
    assert_eq!(last_knn["top1"], trained["top1"]);

    // train drew the curves at the end; `plot` redraws them anywhere.
    let png = image::open(run.join("plot.png")).unwrap();
    assert_eq!((png.width(), png.height()), (1200, 1200));
    let again = base.join("again.png");
    let o = twoview()
        .args(["plot", run.to_str().unwrap(), "--out", again.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("18 train and 1 kNN records"));
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(run.join("plot.png")).unwrap());

    let out = base.join("vit.safetensors");
    let o = twoview()
        .args(["export", "--checkpoint", run.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names: Vec<String> =
        tch::Tensor::read_safetensors(&out).unwrap().into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&"blocks.1.attn.qkv.weight".to_owned())
            && names.contains(&"pos_embed".to_owned())
    );
    assert!(names.iter().all(|n| !n.starts_with("head") && !n.contains("encoder")), "{names:?}");

    let Some(python) = venv_python() else { return };
    tch::manual_seed(5);
    let x = tch::Tensor::randn([4, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu));
    let inp = base.join("input.safetensors");
    tch::Tensor::write_safetensors(&[("x", &x)], &inp).unwrap();
    let feats = base.join("timm-features.safetensors");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/timm_export_check.py");
    let o = std::process::Command::new(python)
        .arg(script)
        .args([&out, &out.with_extension("json"), &inp, &feats])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "timm could not load the export:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let theirs = &tch::Tensor::read_safetensors(&feats).unwrap()[0].1;

    let dir = twoview_model::checkpoint::resolve(&run).unwrap();
    let loaded = twoview_model::checkpoint::load_dir(&dir, tch::Device::Cpu).unwrap();
    let plan = loaded.state.plan.clone();
    let moco = twoview_model::moco::Moco::new(plan.moco, tch::Device::Cpu);
    moco.load_named(&loaded.tensors).unwrap();
    let ours = moco.features(&x);
    let rel = (&ours - theirs).norm().double_value(&[]) / theirs.norm().double_value(&[]);
    assert!(rel < 1e-5, "timm features differ from ours: relative error {rel:.3e}");
    eprintln!("timm round trip: relative error {rel:.3e}");
}
