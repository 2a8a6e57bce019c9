//! The binary itself: it starts from any directory with no environment help (the rpath that
//! model/build.rs bakes in finds libtorch), and prints what it should.

use std::process::Command;

fn twoview() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twoview"));
    cmd.env_remove("LD_LIBRARY_PATH").current_dir(std::env::temp_dir());
    cmd
}

#[test]
fn version_runs_without_ld_library_path_from_another_directory() {
    let out = twoview().arg("--version").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "twoview 0.0.0");
}

#[test]
fn info_computes_on_the_cpu() {
    let out = twoview().args(["info", "--device", "cpu"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("device cpu: ok"), "{stdout}");
    assert!(stdout.contains("libtorch: linked at build time from /"), "{stdout}");
}

#[test]
fn unknown_device_fails_with_a_message_naming_it() {
    let out = twoview().args(["info", "--device", "tpu:0"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tpu:0") && stderr.contains("expected cpu"), "{stderr}");
}
