//! `twoview train` data-parallel on the CPU (Gloo over 127.0.0.1), as a user launches it: plain
//! RANK/WORLD_SIZE/MASTER_* variables and torchrun (the venv's `torch.distributed.run
//! --no-python`). Two processes × batch 8 train as one process × batch 16 (global batch): the
//! same losses and weights; a lost peer stops the survivor with a message, within the timeout.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{losses, scratch, shards, train_cmd};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

const SHORT: [&str; 3] = ["max_steps=3", "checkpoint_every=3", "threads=1"];

/// `world` processes of `train` with the launcher's variables set by hand, `--set` of `args`
/// on top of the tiny configuration, `--resume` when `resume`.
fn spawn_ranks(shards: &Path, out: &Path, world: usize, args: &[&str], resume: bool) -> Vec<Child> {
    let port = free_port().to_string();
    (0..world)
        .map(|rank| {
            let mut cmd = train_cmd(shards, out, args);
            if resume {
                cmd.arg("--resume");
            }
            cmd.args(["--dist-timeout", "20"])
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect()
}

fn finish(children: Vec<Child>) -> Vec<Output> {
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

fn assert_close(a: &[(u64, f64)], b: &[(u64, f64)], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: {a:?} vs {b:?}");
    for ((s1, l1), (s2, l2)) in a.iter().zip(b) {
        assert_eq!(s1, s2);
        assert!((l1 - l2).abs() <= 1e-5 * l2.abs(), "{what}: step {s1}: loss {l1} vs {l2}");
    }
}

fn weights(run: &Path) -> Vec<(String, tch::Tensor)> {
    let mut v =
        tch::Tensor::read_safetensors(run.join("checkpoints/step-00000003/tensors.safetensors"))
            .unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn two_processes_train_as_one_process_of_the_global_batch() {
    let base = scratch("dist_equal");
    let shards = shards(&base);
    let one = base.join("one");
    let o = train_cmd(&shards, &one, &SHORT).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let two = base.join("two");
    let outs = finish(spawn_ranks(&shards, &two, 2, &SHORT, false));
    for (rank, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "rank {rank}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let err0 = String::from_utf8_lossy(&outs[0].stderr);
    assert!(err0.contains("data-parallel: 2 processes (RANK/WORLD_SIZE, Gloo"), "{err0}");
    assert!(!String::from_utf8_lossy(&outs[1].stderr).contains("train: ViT"), "rank 1 is quiet");
    assert_close(&losses(&two), &losses(&one), "2 × 8 against 1 × 16");
    // The weights after 3 steps (rank 0 wrote them): the same model, to float rounding; the
    // exact-zero-gradient elements of qkv biases and the final norm's bias are noise (±lr per
    // Adam step) on both sides, and exact-zero BN means noise below 1e-6.
    for ((n, a), (m, b)) in weights(&two).iter().zip(&weights(&one)) {
        assert_eq!(n, m);
        let max = (a - b).abs().max().double_value(&[]);
        let rel = (a - b).norm().double_value(&[]) / b.norm().double_value(&[]).max(1e-12);
        let noise = n.contains("qkv.bias") || n.contains("encoder.norm.bias");
        assert!(
            rel < 1e-5 || max < 1e-6 || (noise && max < 1e-3),
            "{n}: rel {rel:.2e}, max {max:.2e}"
        );
    }

    // The same run through torchrun (its agent serves the store; every rank a client).
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if !py.exists() {
        assert!(std::env::var_os("CI").is_none(), "CI needs the venv's torchrun");
        eprintln!("skipping torchrun: no {}", py.display());
        return;
    }
    let torchrun = base.join("torchrun");
    let train = train_cmd(&shards, &torchrun, &SHORT);
    let o = Command::new(&py)
        .args(["-m", "torch.distributed.run", "--no-python", "--nproc-per-node", "2"])
        .args(["--master-addr", "127.0.0.1", "--master-port", &free_port().to_string()])
        .arg(train.get_program())
        .args(train.get_args())
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "torchrun: {err}");
    assert!(err.contains("2 processes (torchrun, Gloo"), "{err}");
    assert_close(&losses(&torchrun), &losses(&two), "torchrun against RANK/WORLD_SIZE");
}

#[test]
fn a_killed_rank_stops_the_other_with_a_message_and_resume_continues() {
    let base = scratch("dist_kill");
    let shards = shards(&base);
    let run = base.join("run");
    // Long enough to be killed mid-run; checkpoints every 4 steps.
    let extra = ["max_steps=60", "checkpoint_every=4", "threads=1"];
    let mut children = spawn_ranks(&shards, &run, 2, &extra, false);
    let t = Instant::now();
    while !run.join("checkpoints/step-00000004").exists() {
        assert!(t.elapsed() < Duration::from_secs(120), "no checkpoint after 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    children[1].kill().unwrap(); // SIGKILL
    let survivor = children.remove(0);
    let t = Instant::now();
    let out = survivor.wait_with_output().unwrap();
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rank 0 went on without its peer: {err}");
    assert!(took < Duration::from_secs(60), "rank 0 took {took:?} to notice");
    assert!(
        err.contains("distributed:") && err.contains("relaunch every rank with --resume"),
        "{err}"
    );
    eprintln!("rank 0 after its peer was killed ({took:?}): {}", err.lines().last().unwrap_or(""));
    let _ = children.remove(0).wait();

    resume_matches_straight(&shards, &base, &extra, 60, "the kill and resume");
}

/// Relaunches `base/run` on 2 ranks with `--resume` to the end (`steps`), then checks every
/// step is logged once and every loss is, bit for bit, an uninterrupted 2-process run's.
fn resume_matches_straight(shards: &Path, base: &Path, extra: &[&str], steps: u64, what: &str) {
    let run = base.join("run");
    let outs = finish(spawn_ranks(shards, &run, 2, extra, true));
    for (rank, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "rank {rank}: {}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(String::from_utf8_lossy(&outs[0].stderr).contains("resumed from"));
    let got = losses(&run);
    let logged: Vec<u64> = got.iter().map(|x| x.0).collect();
    assert_eq!(logged, (1..=steps).collect::<Vec<_>>(), "every step logged once");
    let straight = base.join("straight");
    let outs = finish(spawn_ranks(shards, &straight, 2, extra, false));
    assert!(outs.iter().all(|o| o.status.success()));
    for ((s, a), (_, b)) in got.iter().zip(&losses(&straight)) {
        assert_eq!(a.to_bits(), b.to_bits(), "step {s}: {a} after {what}, {b} straight");
    }
}

#[test]
fn a_run_resumes_at_another_world_size() {
    let base = scratch("dist_world");
    let shards = shards(&base);
    let straight = base.join("straight");
    let o = train_cmd(&shards, &straight, &["max_steps=8", "checkpoint_every=4"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // 4 steps in one process, then 4 more in two.
    let run = base.join("run");
    let o = train_cmd(&shards, &run, &["max_steps=4", "checkpoint_every=4"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let children = spawn_ranks(&shards, &run, 2, &["max_steps=8", "checkpoint_every=4"], true);
    for (rank, o) in finish(children).iter().enumerate() {
        assert!(o.status.success(), "rank {rank}: {}", String::from_utf8_lossy(&o.stderr));
    }
    assert_close(&losses(&run), &losses(&straight), "1 then 2 processes against 1 throughout");
}

#[test]
fn ctrl_c_on_one_rank_stops_every_rank_with_a_checkpoint_and_resume_is_exact() {
    let base = scratch("dist_interrupt");
    let shards = shards(&base);
    let run = base.join("run");
    let extra = ["max_steps=40", "checkpoint_every=100", "threads=1"];
    let mut children = spawn_ranks(&shards, &run, 2, &extra, false);
    let t = Instant::now();
    while std::fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |m| m.lines().count()) < 6 {
        assert!(t.elapsed() < Duration::from_secs(120), "no progress after 120 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Ctrl-C reaches rank 1 alone (a signal to one process of the job).
    // SAFETY: kill(2) on our own live child with SIGINT; no memory is passed.
    let rc = unsafe { libc::kill(children[1].id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0, "kill(SIGINT): {}", std::io::Error::last_os_error());
    let t = Instant::now();
    let outs = finish(std::mem::take(&mut children));
    assert!(t.elapsed() < Duration::from_secs(60), "the ranks took {:?} to stop", t.elapsed());
    for (rank, o) in outs.iter().enumerate() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(130), "rank {rank} after Ctrl-C on rank 1: {err}");
    }
    let saved: Vec<u64> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_prefix("step-")?.parse().ok())
        .collect();
    assert_eq!(saved.len(), 1, "one checkpoint, written at the common stop: {saved:?}");
    assert!(saved[0] < 40, "stopped at step {} of 40", saved[0]);
    eprintln!("Ctrl-C on rank 1: both ranks stopped at step {} with a checkpoint", saved[0]);

    resume_matches_straight(&shards, &base, &extra, 40, "Ctrl-C and resume");
}
