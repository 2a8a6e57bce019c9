//! Checkpoints: a folder `step-NNNNNNNN/` holding `tensors.safetensors` (every model variable,
//! optimizer state, anything else named) and `state.json` (the caller's metadata: step, loader
//! cursor, plan …). Written under a temporary name, fsynced, then renamed, so a checkpoint
//! folder either exists complete or not at all; older ones beyond `keep` are removed after.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

const TENSORS: &str = "tensors.safetensors";
const STATE: &str = "state.json";

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Loaded {
    pub dir: PathBuf,
    pub step: u64,
    pub tensors: HashMap<String, Tensor>,
    pub state: serde_json::Value,
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

fn fsync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

fn ctx(e: impl std::fmt::Display, what: &str, path: &Path) -> io::Error {
    io::Error::other(format!("{what} {}: {e}", path.display()))
}

/// Writes checkpoint `step` under `root` atomically and keeps the newest `keep` (≥ 1).
pub fn save(
    root: &Path,
    step: u64,
    tensors: &[(String, Tensor)],
    state: &serde_json::Value,
    keep: usize,
) -> io::Result<PathBuf> {
    fs::create_dir_all(root).map_err(|e| ctx(e, "cannot create", root))?;
    let fin = step_dir(root, step);
    let tmp = root.join(format!(".tmp-step-{step:08}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp).map_err(|e| ctx(e, "cannot create", &tmp))?;
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.detach().to_device(Device::Cpu).contiguous()))
        .collect();
    let tpath = tmp.join(TENSORS);
    Tensor::write_safetensors(&cpu, &tpath).map_err(|e| ctx(e, "cannot write", &tpath))?;
    fs::File::open(&tpath)?.sync_all()?;
    let spath = tmp.join(STATE);
    let text = serde_json::to_string_pretty(state).expect("JSON values serialise");
    fs::write(&spath, text + "\n").map_err(|e| ctx(e, "cannot write", &spath))?;
    fs::File::open(&spath)?.sync_all()?;
    fsync_dir(&tmp)?;
    if fin.exists() {
        fs::remove_dir_all(&fin).map_err(|e| ctx(e, "cannot replace", &fin))?;
    }
    fs::rename(&tmp, &fin).map_err(|e| ctx(e, "cannot rename into", &fin))?;
    fsync_dir(root)?;
    let mut steps = list(root)?;
    steps.sort_unstable();
    let n = steps.len();
    for old in steps.into_iter().take(n.saturating_sub(keep.max(1))) {
        let _ = fs::remove_dir_all(step_dir(root, old));
    }
    Ok(fin)
}

/// Steps of the complete checkpoints under `root` (unordered); temporaries are ignored.
pub fn list(root: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(ctx(e, "cannot list", root)),
    };
    for e in rd {
        let e = e?;
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
pub fn load_dir(dir: &Path, device: Device) -> io::Result<Loaded> {
    let step = dir.file_name().and_then(|n| n.to_str()).and_then(parse_step).ok_or_else(|| {
        io::Error::other(format!("{} is not a step-NNNNNNNN checkpoint folder", dir.display()))
    })?;
    let spath = dir.join(STATE);
    let text = fs::read_to_string(&spath).map_err(|e| ctx(e, "cannot read", &spath))?;
    let state = serde_json::from_str(&text).map_err(|e| ctx(e, "bad JSON in", &spath))?;
    let tpath = dir.join(TENSORS);
    let tensors = Tensor::read_safetensors(&tpath)
        .map_err(|e| ctx(e, "cannot read", &tpath))?
        .into_iter()
        .map(|(n, t)| (n, t.to_device(device)))
        .collect();
    Ok(Loaded { dir: dir.to_owned(), step, tensors, state })
}

/// A checkpoint folder from what a user names: a `step-N` folder itself, a checkpoints folder
/// (its newest), or a run folder (the newest under its `checkpoints/`).
pub fn resolve(path: &Path) -> io::Result<PathBuf> {
    if path.join(STATE).is_file() {
        return Ok(path.to_owned());
    }
    for root in [path.join("checkpoints"), path.to_owned()] {
        if let Some(dir) = latest(&root)? {
            return Ok(dir);
        }
    }
    Err(io::Error::other(format!(
        "{}: no checkpoint (expected a step-NNNNNNNN folder, a checkpoints folder or a run folder)",
        path.display()
    )))
}

/// The newest complete checkpoint under `root`, if any.
pub fn latest(root: &Path) -> io::Result<Option<PathBuf>> {
    Ok(list(root)?.into_iter().max().map(|s| step_dir(root, s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_keeps_newest_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ckpt");
        for step in [10u64, 20, 30] {
            let t = Tensor::from_slice(&[step as f32, 1.5]);
            save(&root, step, &[("a.b".to_owned(), t)], &serde_json::json!({ "step": step }), 2)
                .unwrap();
        }
        let mut steps = list(&root).unwrap();
        steps.sort_unstable();
        assert_eq!(steps, [20, 30]);
        // A leftover temporary and an incomplete folder are not checkpoints.
        fs::create_dir_all(root.join(".tmp-step-00000040-1")).unwrap();
        fs::create_dir_all(root.join("step-00000050")).unwrap();
        let l = load_dir(&latest(&root).unwrap().unwrap(), Device::Cpu).unwrap();
        assert_eq!(l.step, 30);
        assert_eq!(l.state["step"], 30);
        assert_eq!(Vec::<f32>::try_from(&l.tensors["a.b"]).unwrap(), [30.0, 1.5]);
        clean_temporaries(&root);
        assert!(!root.join(".tmp-step-00000040-1").exists());
    }
}
