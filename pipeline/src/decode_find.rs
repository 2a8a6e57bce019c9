//! Finding image files under folders (previews and benches).

use std::path::Path;

use crate::Error;

/// Image files (`.jpg`, `.jpeg`, `.png`, any case) under `paths`: files are taken as given,
/// folders are walked recursively in sorted order. Stops after `limit` files.
pub fn find_images(
    paths: &[std::path::PathBuf],
    limit: usize,
) -> Result<Vec<std::path::PathBuf>, Error> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>, limit: usize) -> Result<(), Error> {
        let io = |source| Error::Io { path: dir.to_owned(), source };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        entries.sort();
        for p in entries {
            if out.len() >= limit {
                break;
            }
            if p.is_dir() {
                walk(&p, out, limit)?;
            } else if crate::prep::is_image_name(&p) {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if out.len() >= limit {
            break;
        }
        if p.is_dir() {
            walk(p, &mut out, limit)?;
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(Error::Io { path: p.clone(), source: std::io::ErrorKind::NotFound.into() });
        }
    }
    Ok(out)
}
