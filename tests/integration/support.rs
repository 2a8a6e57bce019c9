//! Where the tests find the shared data and the project's Python.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_owned()
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// `../shared/datasets/imagenette224`, or `None` (with a message) when it is absent outside CI.
/// In CI its absence is a failure: the data is part of the test environment there.
pub fn imagenette() -> Option<PathBuf> {
    let dir = repo_root().join("../shared/datasets/imagenette224");
    if dir.join("train").is_dir() {
        return Some(dir);
    }
    assert!(!in_ci(), "CI must have {}", dir.display());
    eprintln!("SKIP: {} is absent (the test needs the shared imagenette224)", dir.display());
    None
}

/// The first `per_class` images (sorted) of each of the first `classes` train classes.
pub fn imagenette_sample(root: &Path, classes: usize, per_class: usize) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(root.join("train")).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    let mut out = Vec::new();
    for d in dirs.into_iter().take(classes) {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        out.extend(files.into_iter().take(per_class));
    }
    out
}

/// The odd-JPEG/PNG corpus that scripts/fetch-test-data.sh gathers, or `None` (with a message)
/// when it is absent outside CI.
pub fn jpeg_corpus() -> Option<PathBuf> {
    let dir = repo_root().join(".cache/test-data/jpeg-corpus");
    if dir.join(".done").exists() {
        return Some(dir);
    }
    assert!(!in_ci(), "CI must have {} (scripts/fetch-test-data.sh)", dir.display());
    eprintln!("SKIP: {} is absent; run scripts/fetch-test-data.sh", dir.display());
    None
}

/// Runs `python/<script>` with the venv's Python (scripts/setup-venv.sh makes it; test.sh runs
/// that first), failing with its stderr. `None` when the venv is absent outside CI.
pub fn venv_python(script: &str, args: &[&std::ffi::OsStr]) -> Option<()> {
    let python = repo_root().join(".venv/bin/python");
    if !python.exists() {
        assert!(!in_ci(), "CI must have {} (scripts/setup-venv.sh)", python.display());
        eprintln!("SKIP: {} is absent; run scripts/setup-venv.sh", python.display());
        return None;
    }
    let out = Command::new(&python)
        .arg(repo_root().join("python").join(script))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python {script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(())
}

/// A fresh empty directory under the target dir, named for the test.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
