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
