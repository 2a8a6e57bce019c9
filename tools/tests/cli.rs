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

#[test]
fn prep_shards_and_train_are_commands_of_their_own() {
    let direct = |bin: &str| {
        let mut cmd = Command::new(bin);
        cmd.env_remove("LD_LIBRARY_PATH").current_dir(std::env::temp_dir());
        cmd
    };
    let (prep, train) = (env!("CARGO_BIN_EXE_prep-shards"), env!("CARGO_BIN_EXE_train"));
    // The same options as the subcommands, under their own names.
    for (bin, sub, option) in [(prep, "prep-shards", "--short-side"), (train, "train", "--resume")]
    {
        let own = direct(bin).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&own.stdout);
        assert!(own.status.success() && help.contains(option), "{help}");
        assert!(help.contains(&format!("Usage: {sub} ")), "{help}");
        let via = twoview().args([sub, "--help"]).output().unwrap();
        let via = String::from_utf8_lossy(&via.stdout);
        let options = |h: &str| -> Vec<String> {
            h.lines()
                .filter_map(|l| l.trim_start().strip_prefix("--"))
                .map(|l| l.split_whitespace().next().unwrap_or("").to_owned())
                .collect()
        };
        assert_eq!(options(&help), options(&via), "{sub}: the same options as `twoview {sub}`");
    }
    // The same exit codes: 2 for a bad command line, 1 for an error that names its program.
    let o = direct(prep).arg("--no-such-flag").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = direct(prep).args(["/nonexistent-root", "--out", "/tmp/x"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("prep-shards: error: /nonexistent-root: not a folder"), "{err}");
    let o = direct(train).args(["--shards", "/nonexistent", "--out", "/tmp/x"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("train: error:"));
}
