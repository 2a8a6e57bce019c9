//! An exclusive, advisory lock on a folder: `DIR/.lock`, locked with `flock` (through
//! `File::try_lock`) for as long as the [`DirLock`] lives, holding the pid of its owner. The
//! kernel drops the lock when the process ends, however it ends, so a killed trainer never
//! leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::Error;

/// The lock; released on drop (or at process exit).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes `dir/.lock` (creating `dir`), or fails at once with [`Error::Locked`] naming the
/// folder and the pid that holds it. `what` names the holder in that message ("trainer").
pub fn lock_dir(dir: &Path, what: &str) -> Result<DirLock, Error> {
    let path = dir.join(".lock");
    let io = |source| Error::Io { path: path.clone(), source };
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(Error::Locked {
                path: dir.to_owned(),
                holder: format!("{what} (pid {})", pid.trim()),
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(DirLock { _file: file, path })
}
