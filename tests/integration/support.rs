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

thread_local! {
    static TRACKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static LARGEST: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The system allocator, recording the largest request made by a thread inside
/// [`largest_allocation`] (thread-local, so tests running beside it do not count).
pub struct Tracking;

fn note(size: usize) {
    // `try_with`: during thread teardown the locals may be gone; then nothing is recorded.
    if TRACKING.try_with(|t| t.get()).unwrap_or(false) {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the bookkeeping touches only const-initialised thread locals (no
// allocation, no re-entry).
unsafe impl std::alloc::GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded as received; the caller upholds `alloc`'s contract.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as `alloc`.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        note(new);
        // SAFETY: as `dealloc`; `new` is the caller's, checked by its contract.
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

/// Runs `f` and returns its result with the largest single Rust allocation it made on this
/// thread (libjpeg's C allocations are not seen; they are bounded by the pixel limit checked
/// from the frame header before libjpeg allocates).
pub fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let r = f();
    TRACKING.with(|t| t.set(false));
    (r, LARGEST.with(|l| l.get()))
}

/// splitmix64: the randomness of the tests' generated inputs (mutations, cuts), one stream per
/// (seed, input) so that any input can be made again.
pub struct Mix(pub u64);

impl Mix {
    pub fn for_input(seed: u64, i: u64) -> Self {
        let mut m = Self(seed ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03));
        m.next();
        m
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}
