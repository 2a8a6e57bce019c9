//! Checkpoints: a folder `step-NNNNNNNN/` holding `tensors.safetensors` (every model variable,
//! optimizer state, anything else named) and `state.json` (the caller's metadata: step, loader
//! cursor, plan …). Written under a temporary name, fsynced, then renamed, so a checkpoint
//! folder either exists complete or not at all; older ones beyond `keep` are removed after.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::Error;
use crate::config::Plan;

const TENSORS: &str = "tensors.safetensors";
const STATE: &str = "state.json";

/// The version of [`RunState`] this build writes. 1: the untyped state before versions were
/// recorded (no `version` key; `data` and `recipe` possibly absent), read as version 1.
pub const STATE_VERSION: u32 = 2;

/// Where the data feed stands: the loader's cursor as plain data (the pipeline's
/// `loader::Cursor` has the same fields and the same JSON).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Epoch (0-based).
    pub epoch: u64,
    /// Batch within the epoch (0-based).
    pub batch: u64,
}

/// What a run was trained on: compared on `--resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataIdentity {
    /// xxh3 of the shard folder's manifest.json.
    pub manifest_checksum: String,
    /// Rows of the train split.
    pub train_rows: u64,
}

/// Everything of a run that is not a tensor, saved as `state.json` in every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// [`STATE_VERSION`] when written by this build.
    #[serde(default = "version_1")]
    pub version: u32,
    /// Steps taken.
    pub step: u64,
    /// Where the next batch comes from.
    pub cursor: Cursor,
    /// The resolved configuration.
    pub plan: Plan,
    /// The optimizer's step count (bias correction).
    pub optimizer_steps: i64,
    /// The shards trained on (absent in some version-1 states).
    #[serde(default)]
    pub data: Option<DataIdentity>,
    /// The augmentation recipe as the pipeline serialises it (absent in some version-1 states).
    #[serde(default)]
    pub recipe: Option<serde_json::Value>,
}

fn version_1() -> u32 {
    1
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Loaded {
    pub dir: PathBuf,
    pub step: u64,
    pub tensors: HashMap<String, Tensor>,
    pub state: RunState,
}

fn step_dir(root: &Path, step: u64) -> PathBuf {
    root.join(format!("step-{step:08}"))
}

fn parse_step(name: &str) -> Option<u64> {
    name.strip_prefix("step-")
        .filter(|s| s.len() >= 8 && s.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()
}

fn fsync(path: &Path) -> Result<(), Error> {
    fs::File::open(path).and_then(|f| f.sync_all()).map_err(Error::file("cannot fsync", path))
}

/// Writes the checkpoint's files into the fresh folder `tmp`, each fsynced.
fn write_files(tmp: &Path, tensors: &[(String, Tensor)], state: &RunState) -> Result<(), Error> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.detach().to_device(Device::Cpu).contiguous()))
        .collect();
    let tpath = tmp.join(TENSORS);
    Tensor::write_safetensors(&cpu, &tpath).map_err(|e| Error::File {
        what: "cannot write",
        path: tpath.clone(),
        source: tch_io_error(e),
    })?;
    fsync(&tpath)?;
    let spath = tmp.join(STATE);
    let text = serde_json::to_string_pretty(state).expect("a RunState serialises");
    fs::write(&spath, text + "\n").map_err(Error::file("cannot write", &spath))?;
    fsync(&spath)?;
    fsync(tmp)
}

/// tch reports I/O failures as text; recover the OS error when there is one, so that a full
/// disk is recognised as such.
fn tch_io_error(e: tch::TchError) -> io::Error {
    match e {
        tch::TchError::Io(e) => e,
        other => {
            let text = other.to_string();
            let kind = if text.contains("No space left") {
                io::ErrorKind::StorageFull
            } else if text.contains("File too large") {
                io::ErrorKind::FileTooLarge
            } else {
                io::ErrorKind::Other
            };
            io::Error::new(kind, text)
        }
    }
}

/// Puts the complete folder `tmp` in place as `fin`. When `fin` exists (a step saved again),
/// the two are exchanged atomically (`renameat2(RENAME_EXCHANGE)`), so there is no moment
/// without a complete `fin`; the old one, now under `tmp`'s name, is removed after.
fn install(tmp: &Path, fin: &Path) -> Result<(), Error> {
    if !fin.exists() {
        return fs::rename(tmp, fin).map_err(Error::file("cannot rename into", fin));
    }
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).expect("paths have no NUL");
    let (a, b) = (c(tmp), c(fin));
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        // A file system without RENAME_EXCHANGE: the old folder steps aside first (a brief
        // moment where only older steps are complete).
        let aside = tmp.with_extension("old");
        fs::rename(fin, &aside).map_err(Error::file("cannot move aside", fin))?;
        fs::rename(tmp, fin).map_err(Error::file("cannot rename into", fin))?;
        let _ = fs::remove_dir_all(&aside);
        return Ok(());
    }
    let _ = fs::remove_dir_all(tmp);
    Ok(())
}

/// Writes checkpoint `step` under `root` atomically and keeps the newest `keep` (≥ 1). On any
/// failure (a full disk, say) nothing of the attempt is left and every existing checkpoint is
/// as it was.
pub fn save(
    root: &Path,
    step: u64,
    tensors: &[(String, Tensor)],
    state: &RunState,
    keep: usize,
) -> Result<PathBuf, Error> {
    fs::create_dir_all(root).map_err(Error::file("cannot create", root))?;
    let fin = step_dir(root, step);
    let tmp = root.join(format!(".tmp-step-{step:08}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp).map_err(Error::file("cannot create", &tmp))?;
    if let Err(e) = write_files(&tmp, tensors, state).and_then(|()| install(&tmp, &fin)) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    fsync(root)?;
    let mut steps = list(root)?;
    steps.sort_unstable();
    let n = steps.len();
    for old in steps.into_iter().take(n.saturating_sub(keep.max(1))) {
        let _ = fs::remove_dir_all(step_dir(root, old));
    }
    Ok(fin)
}

/// Steps of the complete checkpoints under `root` (unordered); temporaries are ignored.
pub fn list(root: &Path) -> Result<Vec<u64>, Error> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(Error::File { what: "cannot list", path: root.to_owned(), source: e });
        }
    };
    for e in rd {
        let e = e.map_err(Error::file("cannot list", root))?;
        if let Some(step) = e.file_name().to_str().and_then(parse_step)
            && e.path().join(STATE).is_file()
            && e.path().join(TENSORS).is_file()
        {
            out.push(step);
        }
    }
    Ok(out)
}

/// Removes temporaries that an interrupted [`save`] left.
pub fn clean_temporaries(root: &Path) {
    if let Ok(rd) = fs::read_dir(root) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-step-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Loads one checkpoint folder; tensors land on `device`.
pub fn load_dir(dir: &Path, device: Device) -> Result<Loaded, Error> {
    let bad = |message: String| Error::Checkpoint { path: dir.to_owned(), message };
    let step = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_step)
        .ok_or_else(|| bad("not a step-NNNNNNNN checkpoint folder".into()))?;
    let spath = dir.join(STATE);
    let text = fs::read_to_string(&spath).map_err(Error::file("cannot read", &spath))?;
    let state: RunState = serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
        path: spath.clone(),
        message: format!("not a twoview run state: {e}"),
    })?;
    if state.version > STATE_VERSION {
        return Err(Error::Checkpoint {
            path: spath,
            message: format!(
                "written by a newer twoview (state version {}; this one reads up to {STATE_VERSION})",
                state.version
            ),
        });
    }
    if state.step != step {
        return Err(bad(format!("the folder says step {step}, its state.json {}", state.step)));
    }
    let tpath = dir.join(TENSORS);
    let tensors = Tensor::read_safetensors(&tpath)
        .map_err(|e| Error::File {
            what: "cannot read",
            path: tpath.clone(),
            source: tch_io_error(e),
        })?
        .into_iter()
        .map(|(n, t)| (n, t.to_device(device)))
        .collect();
    Ok(Loaded { dir: dir.to_owned(), step, tensors, state })
}

/// A checkpoint folder from what a user names: a `step-N` folder itself, a checkpoints folder
/// (its newest), or a run folder (the newest under its `checkpoints/`).
pub fn resolve(path: &Path) -> Result<PathBuf, Error> {
    if path.join(STATE).is_file() {
        return Ok(path.to_owned());
    }
    for root in [path.join("checkpoints"), path.to_owned()] {
        if let Some(dir) = latest(&root)? {
            return Ok(dir);
        }
    }
    Err(Error::Checkpoint {
        path: path.to_owned(),
        message: "no checkpoint (expected a step-NNNNNNNN folder, a checkpoints folder or a run \
                  folder)"
            .into(),
    })
}

/// The newest complete checkpoint under `root`, if any.
pub fn latest(root: &Path) -> Result<Option<PathBuf>, Error> {
    Ok(list(root)?.into_iter().max().map(|s| step_dir(root, s)))
}

#[cfg(test)]
mod tests;
