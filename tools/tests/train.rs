//! `twoview train` as a user runs it, on a tiny ViT over small synthetic shards (CPU):
//! kill -9 at random moments then `--resume` gives a loss trajectory bit-identical to an
//! uninterrupted run; a NaN loss stops the run with exit 4 and the last good checkpoint intact;
//! configuration mistakes are named.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{losses, scratch, shards, train_cmd, twoview};

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

#[test]
fn kill_9_then_resume_is_bit_identical_and_the_loss_falls() {
    let base = scratch("train_resume");
    let shards = shards(&base);

    let straight = base.join("straight");
    let t = Instant::now();
    let o = run(&mut train_cmd(&shards, &straight, &[]));
    let t_straight = t.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = losses(&straight);
    assert_eq!(want.iter().map(|x| x.0).collect::<Vec<_>>(), (1..=60).collect::<Vec<_>>());
    let mean = |s: &[(u64, f64)]| s.iter().map(|x| x.1).sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&want[..10]), mean(&want[50..]));
    assert!(
        last < first - 0.1,
        "the loss does not fall: first 10 steps {first:.4}, last 10 {last:.4}"
    );

    // Kill -9 at random moments (seeded from the clock) within the time a whole run takes,
    // then resume until it finishes.
    let killed = base.join("killed");
    let full = t_straight.as_millis() as u64;
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            as u64
            | 1;
    let (mut kills, mut runs, mut resumes) = (0, 0, 0);
    loop {
        runs += 1;
        assert!(runs < 40, "no progress after {runs} runs");
        let log = base.join(format!("run{runs}.log"));
        let mut child = train_cmd(&shards, &killed, &[])
            .arg("--resume")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(if kills < 3 || resumes == 0 {
            seed % (full / 2).max(1)
        } else {
            600_000
        });
        let t = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if t.elapsed() >= delay {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        resumes += std::fs::read_to_string(&log).unwrap().contains("resumed from") as u32;
        match status {
            Some(st) => {
                assert!(st.success(), "a resumed run failed: {st}");
                break;
            }
            None => kills += 1,
        }
    }
    assert!(kills >= 3, "only {kills} kills landed");
    assert!(resumes >= 1, "no run resumed from a checkpoint ({kills} kills)");
    let got = losses(&killed);
    assert_eq!(got.len(), want.len(), "each step is logged once after resumes");
    for ((s1, l1), (s2, l2)) in got.iter().zip(&want) {
        assert_eq!(s1, s2);
        assert_eq!(l1.to_bits(), l2.to_bits(), "step {s1}: loss {l1} after resume, {l2} straight");
    }
    eprintln!(
        "{kills} kills over {runs} runs, {resumes} resumed from a checkpoint; 60 losses bit-identical"
    );
}

#[test]
fn a_nan_loss_stops_with_exit_4_and_keeps_the_last_good_checkpoint() {
    let base = scratch("train_nan");
    let shards = shards(&base);
    let out = base.join("run");
    let o = run(&mut train_cmd(&shards, &out, &["debug_nan_at_step=10"]));
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the loss is NaN at step 10"), "{err}");
    assert!(err.contains("step-00000008"), "names the last good checkpoint: {err}");
    let ck = out.join("checkpoints");
    let mut steps: Vec<String> = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    steps.sort();
    assert_eq!(steps, ["step-00000004", "step-00000008"]);
    let tensors =
        tch::Tensor::read_safetensors(ck.join("step-00000008/tensors.safetensors")).unwrap();
    for (name, t) in &tensors {
        let finite = t.isfinite().all().int64_value(&[]) == 1;
        assert!(finite, "{name} is not finite in the kept checkpoint");
    }
    let logged = losses(&out);
    assert_eq!(logged.last().unwrap().0, 9, "no train line for the NaN step");
    assert!(logged.iter().all(|(_, l)| l.is_finite()));
    // Resuming without the poisoned step continues from step 8.
    let o = run(train_cmd(&shards, &out, &["max_steps=12"]).arg("--resume"));
    // debug_nan_at_step is part of the saved method configuration, so it is still 10: the
    // run stops there again — proof that resume starts from 8 and replays 9 and 10.
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("resumed from"));
}

#[test]
fn configuration_mistakes_are_named() {
    let base = scratch("train_config");
    let shards = shards(&base);
    let out = base.join("run");
    let o = run(&mut train_cmd(&shards, &out, &["batch_sise=3"]));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("batch_sise"), "{err}");
    let o = run(&mut train_cmd(&shards, &out, &["patch=7"]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("patch 7 does not divide image_size 32"));
    let o = run(&mut train_cmd(&shards, &out, &["batch_size=500"]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("larger than the 96 training images"));
    // A finished run is not overwritten, and --resume cannot change the method.
    let o = run(&mut train_cmd(&shards, &out, &["max_steps=2"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&mut train_cmd(&shards, &out, &["max_steps=2"]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pass --resume"));
    let mut cmd = twoview();
    cmd.args([
        "train",
        "--shards",
        shards.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--resume",
    ]);
    let o =
        run(Command::new(cmd.get_program()).args(cmd.get_args()).args(["--set", "base_lr=0.1"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--set base_lr=0.1: `base_lr`: cannot change on --resume (the run has 0.005"),
        "{err}"
    );
    let o = run(cmd.args(["--set", "max_steps=3"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(losses(&out).iter().map(|x| x.0).collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn a_second_trainer_on_the_same_run_folder_is_refused() {
    let base = scratch("train_lock");
    let shards = shards(&base);
    let out = base.join("run");
    // This test process plays the live trainer: it holds RUN_DIR/.lock as train does.
    let held = twoview_formats::lock_dir(&out, "trainer").unwrap();
    let o = run(&mut train_cmd(&shards, &out, &["max_steps=1"]));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is in use by another trainer (pid"), "{err}");
    assert!(!out.join("checkpoints").exists(), "nothing was written by the refused trainer");
    drop(held);
    let o = run(&mut train_cmd(&shards, &out, &["max_steps=1"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_damaged_row_stops_the_run_naming_it_or_is_replaced_and_counted() {
    let base = scratch("train_bad_row");
    shards(&base); // the images
    let jpeg = base.join("jpeg-shards");
    let st = twoview()
        .args(["prep-shards", base.join("images").to_str().unwrap(), "--out"])
        .args([jpeg.to_str().unwrap(), "--short-side", "36", "--encoding", "jpeg"])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    // Damage one row: its JPEG's first quantization-table marker becomes one libjpeg refuses.
    // The shard still opens (rows are checked, not decoded), the loader meets the row when it
    // decodes it.
    let shard = std::fs::read_dir(&jpeg)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "arrow"))
        .unwrap();
    let mut bytes = std::fs::read(&shard).unwrap();
    let soi = bytes.windows(3).position(|w| w == [0xFF, 0xD8, 0xFF]).unwrap();
    let dqt = soi + bytes[soi..].windows(2).position(|w| w == [0xFF, 0xDB]).unwrap();
    bytes[dqt + 1] = 0x02;
    std::fs::write(&shard, bytes).unwrap();

    let o = run(&mut train_cmd(&jpeg, &base.join("fail"), &["max_steps=6", "checkpoint_every=0"]));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(shard.file_name().unwrap().to_str().unwrap()) && err.contains("row 0"),
        "{err}"
    );

    let out = base.join("replace");
    let extra = ["max_steps=6", "checkpoint_every=0", "on_bad_row=replace"];
    let o = run(&mut train_cmd(&jpeg, &out, &extra));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let last: serde_json::Value = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .rfind(|v| v["kind"] == "train")
        .unwrap();
    assert_eq!(last["replaced_rows"], 1, "{last}");
}

#[test]
fn resume_refuses_other_shards_or_another_recipe_unless_allowed() {
    let base = scratch("train_resume_inputs");
    let shards = shards(&base);
    let out = base.join("run");
    let o = run(&mut train_cmd(&shards, &out, &["max_steps=4"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Other shards: the same images at another size (another manifest).
    let other = base.join("other-shards");
    let st = twoview()
        .args(["prep-shards", base.join("images").to_str().unwrap(), "--out"])
        .args([other.to_str().unwrap(), "--short-side", "40"])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let o = run(train_cmd(&other, &out, &["max_steps=6"]).arg("--resume"));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("are not the shards this run trained on") && err.contains("other-shards"),
        "{err}"
    );
    let o = run(train_cmd(&shards, &out, &["max_steps=6"]).args(["--resume", "--recipe", "byol"]));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("recipe \"byol\" is not the one this run trained with (\"mocov3_vit\")"),
        "{err}"
    );
    let o =
        run(train_cmd(&other, &out, &["max_steps=6"]).args(["--resume", "--allow-data-change"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--allow-data-change"));
}

#[test]
fn moco_v3_argument_names_set_our_keys() {
    let base = scratch("train_aliases");
    let shards = shards(&base);
    let out = base.join("run");
    let extra = ["max_steps=1", "moco-m=0.95", "moco_t=0.5", "lr=0.002"];
    let o = run(&mut train_cmd(&shards, &out, &extra));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("plan.json")).unwrap()).unwrap();
    let c = &plan["plan"]["config"];
    assert_eq!((c["momentum"].as_f64(), c["temperature"].as_f64()), (Some(0.95), Some(0.5)));
    assert_eq!(c["base_lr"].as_f64(), Some(0.002), "the alias wins over TINY's base_lr: set later");
}

#[test]
fn train_on_offline_views() {
    let base = scratch("train_views");
    let plain = shards(&base);
    let views = base.join("view-shards");
    let st = twoview()
        .args(["prep-shards", base.join("images").to_str().unwrap(), "--out"])
        .args([views.to_str().unwrap(), "--short-side", "36", "--views", "2", "--view-size", "32"])
        .args(["--view-batch-rows", "16"])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let out = base.join("run");
    // 6 batches per epoch: steps 7 and 8 come from the second variant.
    let o = run(train_cmd(&views, &out, &["max_steps=8", "checkpoint_every=4"]).arg("--views"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("offline views"), "{err}");
    assert_eq!(losses(&out).len(), 8);
    let o = run(train_cmd(&views, &out, &["max_steps=10"]).args(["--views", "--resume"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(losses(&out).last().unwrap().0, 10);
    // Shards without views, or another recipe than the views', are refused.
    let o = run(train_cmd(&plain, &base.join("run2"), &["max_steps=1"]).arg("--views"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no offline views"));
    let o = run(train_cmd(&views, &base.join("run3"), &["max_steps=1"])
        .args(["--views", "--recipe", "byol"]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("were made with recipe \"mocov3_vit\""));
}

#[test]
fn a_checkpoint_that_cannot_be_written_stops_the_run_and_keeps_the_last_good_one() {
    let base = scratch("train_save_fails");
    let shards = shards(&base);
    let out = base.join("run");
    let o = run(&mut train_cmd(&shards, &out, &["max_steps=4"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let good = out.join("checkpoints/step-00000004");
    let bytes = std::fs::metadata(good.join("tensors.safetensors")).unwrap().len();
    assert!(bytes > 64 << 10, "the tensors outgrow the limit below ({bytes} bytes)");
    // A file-size limit (what a full disk looks like to a writer: the write fails part way):
    // half the tensors file. plan.json and metrics.jsonl stay far below it.
    let train = train_cmd(&shards, &out, &["max_steps=8"]);
    let limit_kib = (bytes / 2 / 1024).to_string();
    let o = run(Command::new("bash")
        .args(["-c", "trap '' XFSZ; ulimit -f \"$0\"; exec \"$@\"", &limit_kib])
        .arg(train.get_program())
        .args(train.get_args())
        .arg("--resume"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("checkpoint of step 8 could not be written"), "{err}");
    assert!(err.contains("a file size limit was reached"), "{err}");
    assert!(err.contains("the last good checkpoint is") && err.contains("step-00000004"), "{err}");
    let names: Vec<String> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["step-00000004"], "no partial checkpoint or temporary is left");
    // The kept checkpoint resumes; the run then finishes as if nothing had happened.
    let o = run(train_cmd(&shards, &out, &["max_steps=8"]).arg("--resume"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(losses(&out).iter().map(|x| x.0).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
}

#[test]
fn photometric_ops_on_the_device_train_bit_identically_and_may_switch_on_resume() {
    let base = scratch("train_augment_on");
    let shards = shards(&base);
    let go = |out: &std::path::Path, extra: &[&str], resume: bool| {
        let mut cmd = train_cmd(&shards, out, extra);
        if resume {
            cmd.arg("--resume");
        }
        let o = run(&mut cmd);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        let on_device =
            err.contains("photometric steps (jitter, grayscale, blur, solarize) on Cpu");
        assert_eq!(on_device, extra.contains(&"augment_on=device"), "{err}");
    };
    let cpu = base.join("cpu");
    go(&cpu, &["max_steps=12"], false);
    let device = base.join("device");
    go(&device, &["max_steps=12", "augment_on=device"], false);
    // Half on the CPU, then resumed with the photometric steps on the device.
    let switched = base.join("switched");
    go(&switched, &["max_steps=6"], false);
    go(&switched, &["max_steps=12", "augment_on=device"], true);
    let want = losses(&cpu);
    assert_eq!(want.len(), 12);
    for (name, run) in [("device", &device), ("switched on resume", &switched)] {
        let got = losses(run);
        assert_eq!(got.len(), want.len(), "{name}");
        for ((s, a), (_, b)) in want.iter().zip(&got) {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{name}: step {s}: loss {b} vs {a} on the CPU path"
            );
        }
    }
    let plan = std::fs::read_to_string(device.join("plan.json")).unwrap();
    assert!(plan.contains("\"augment_on\": \"device\""), "{plan}");
    let o = run(&mut train_cmd(&shards, &base.join("bad"), &["augment_on=gpu"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("augment_on") && err.contains("cpu or device"),
        "{err}"
    );
}
