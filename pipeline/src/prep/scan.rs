//! Finding the inputs of a prep: which layout a root has, its classes, and every image file of
//! each split with its label, in sorted order. Only paths are collected, never pixels.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::Error;

/// Which splits to prepare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitSelection {
    /// `train` only.
    Train,
    /// `val` only.
    Val,
    /// Every split the root has.
    All,
}

/// How the root is organised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    #[serde(rename = "imagenet")]
    /// `ROOT/train/<class>/…` and `ROOT/val/<class>/…` or a flat `ROOT/val/` with a labels file
    /// (also the Kaggle release: `ROOT/ILSVRC/Data/CLS-LOC/{train,val}` + `LOC_val_solution.csv`).
    ImageNet,
    /// `ROOT/<class>/…`: one split, named `train`.
    ClassFolders,
}

/// One image file to prepare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// Path relative to the root, `/`-separated: the shard row's key.
    pub key: String,
    /// The file.
    pub path: PathBuf,
    /// Class index, -1 when unknown.
    pub label: i32,
    /// File size in bytes (part of the input fingerprint).
    pub bytes: u64,
}

/// What a root holds.
#[derive(Clone, Debug)]
pub struct Scan {
    /// The root folder.
    pub root: PathBuf,
    /// Its layout.
    pub layout: Layout,
    /// Class names in label order (sorted folder names, as torchvision's ImageFolder).
    pub classes: Vec<String>,
    /// Inputs per split, sorted by key.
    pub splits: BTreeMap<String, Vec<Input>>,
    /// Files under the class folders that are not images by extension (counted, not read).
    pub ignored_files: u64,
    /// Where val labels came from, when a labels file was used.
    pub val_labels_file: Option<PathBuf>,
}

/// Whether a file name has an image extension we take (`.jpg`, `.jpeg`, `.png`, any case).
pub fn is_image_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

fn layout_error(root: &Path, reason: String) -> Error {
    Error::Layout { root: root.to_owned(), reason }
}

/// Sorted entries of a folder, hidden names skipped.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        if !e.file_name().to_string_lossy().starts_with('.') {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Image files under `dir`, recursively (ImageFolder walks subfolders too), sorted by path.
fn images_under(
    dir: &Path,
    root: &Path,
    label: i32,
    out: &mut Vec<Input>,
    ignored: &mut u64,
) -> Result<(), Error> {
    for p in sorted_entries(dir)? {
        let meta = std::fs::metadata(&p).map_err(io(&p))?;
        if meta.is_dir() {
            images_under(&p, root, label, out, ignored)?;
        } else if is_image_name(&p) {
            out.push(Input { key: key_of(&p, root)?, path: p, label, bytes: meta.len() });
        } else {
            *ignored += 1;
        }
    }
    Ok(())
}

fn key_of(p: &Path, root: &Path) -> Result<String, Error> {
    let rel = p.strip_prefix(root).expect("walked from root");
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    parts.map(|v| v.join("/")).ok_or_else(|| {
        layout_error(root, format!("{} is not valid UTF-8; keys are UTF-8", p.display()))
    })
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    Ok(sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()).collect())
}

fn name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Looks at `root` and lists the inputs of the selected splits.
/// `val_labels`: a `LOC_val_solution.csv` or `path<TAB>class` file for a flat `val/` (found
/// automatically beside the root or inside it when not given).
pub fn scan(
    root: &Path,
    selection: SplitSelection,
    val_labels: Option<&Path>,
) -> Result<Scan, Error> {
    if !root.is_dir() {
        return Err(layout_error(root, "not a folder".into()));
    }
    // The Kaggle release nests the ImageNet folders.
    let kaggle = root.join("ILSVRC/Data/CLS-LOC");
    let base = if kaggle.is_dir() { kaggle } else { root.to_owned() };
    let (train, val) = (base.join("train"), base.join("val"));
    let mut ignored = 0;
    let mut splits = BTreeMap::new();
    let mut val_labels_file = None;

    if !train.is_dir() && !val.is_dir() {
        // Plain class folders.
        if selection == SplitSelection::Val {
            return Err(layout_error(
                root,
                "--split val, but the root has no val/ folder (it is a folder of class folders)"
                    .into(),
            ));
        }
        let dirs = subdirs(root)?;
        if dirs.is_empty() {
            return Err(layout_error(root, "no train/ or val/ folder and no class folders".into()));
        }
        let classes: Vec<String> = dirs.iter().map(|d| name(d)).collect();
        let mut inputs = Vec::new();
        for (i, d) in dirs.iter().enumerate() {
            images_under(d, root, i as i32, &mut inputs, &mut ignored)?;
        }
        splits.insert("train".to_owned(), inputs);
        return Ok(Scan {
            root: root.to_owned(),
            layout: Layout::ClassFolders,
            classes,
            splits,
            ignored_files: ignored,
            val_labels_file,
        });
    }

    // Classes come from train/ when it exists (val is labelled against them), else from val/.
    let want_train = selection != SplitSelection::Val;
    let want_val = selection != SplitSelection::Train;
    if want_train && !train.is_dir() {
        return Err(layout_error(root, format!("no {} folder", train.display())));
    }
    if selection == SplitSelection::Val && !val.is_dir() {
        return Err(layout_error(root, format!("no {} folder", val.display())));
    }
    let class_dirs = if train.is_dir() { subdirs(&train)? } else { subdirs(&val)? };
    let classes: Vec<String> = class_dirs.iter().map(|d| name(d)).collect();
    let index: HashMap<&str, i32> =
        classes.iter().enumerate().map(|(i, c)| (c.as_str(), i as i32)).collect();

    if want_train {
        let mut inputs = Vec::new();
        for (i, d) in subdirs(&train)?.iter().enumerate() {
            images_under(d, root, i as i32, &mut inputs, &mut ignored)?;
        }
        if inputs.is_empty() {
            return Err(layout_error(root, format!("{} holds no images", train.display())));
        }
        splits.insert("train".to_owned(), inputs);
    }
    if want_val && val.is_dir() {
        let val_dirs = subdirs(&val)?;
        let mut inputs = Vec::new();
        if !val_dirs.is_empty() {
            for d in &val_dirs {
                let c = name(d);
                let label = *index.get(c.as_str()).ok_or_else(|| {
                    layout_error(root, format!("val class folder {c:?} is not a train class"))
                })?;
                images_under(d, root, label, &mut inputs, &mut ignored)?;
            }
        } else {
            // Flat val/: labels from a file.
            let file = match val_labels {
                Some(f) => f.to_owned(),
                None => [root.join("LOC_val_solution.csv"), val.join("LOC_val_solution.csv"), root.join("val_labels.tsv")]
                    .into_iter()
                    .find(|p| p.is_file())
                    .ok_or_else(|| {
                        layout_error(root, format!(
                            "{} is flat (no class folders) and no labels file was found; pass --val-labels \
                             (LOC_val_solution.csv of the Kaggle release, or lines of path<TAB>class)",
                            val.display()
                        ))
                    })?,
            };
            let labels = read_val_labels(&file, &index)?;
            let mut flat = Vec::new();
            images_under(&val, root, -1, &mut flat, &mut ignored)?;
            for mut input in flat {
                let file_name = name(&input.path);
                let stem =
                    file_name.rsplit_once('.').map_or(file_name.as_str(), |(s, _)| s).to_owned();
                input.label =
                    *labels.get(&file_name).or_else(|| labels.get(&stem)).ok_or_else(|| {
                        layout_error(
                            root,
                            format!("{} has no label in {}", input.key, file.display()),
                        )
                    })?;
                inputs.push(input);
            }
            val_labels_file = Some(file);
        }
        splits.insert("val".to_owned(), inputs);
    }
    Ok(Scan {
        root: root.to_owned(),
        layout: Layout::ImageNet,
        classes,
        splits,
        ignored_files: ignored,
        val_labels_file,
    })
}

/// Reads a val labels file into file name (or stem) → class index.
/// Formats: Kaggle's `ImageId,PredictionString` CSV (first word of the prediction is the wnid),
/// or `path<TAB>class` lines where class is a class name or an index.
fn read_val_labels(file: &Path, index: &HashMap<&str, i32>) -> Result<HashMap<String, i32>, Error> {
    let text = std::fs::read_to_string(file).map_err(io(file))?;
    let bad = |line: usize, reason: String| Error::Labels { path: file.to_owned(), line, reason };
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (n == 0 && line.starts_with("ImageId")) {
            continue;
        }
        let (path, class) = if let Some((p, c)) = line.split_once('\t') {
            (p.trim(), c.trim())
        } else if let Some((p, pred)) = line.split_once(',') {
            (p.trim(), pred.split_whitespace().next().unwrap_or(""))
        } else {
            return Err(bad(
                n + 1,
                format!("expected path<TAB>class or ImageId,PredictionString, got {line:?}"),
            ));
        };
        let label = match index.get(class) {
            Some(&l) => l,
            None => match class.parse::<i32>() {
                Ok(l) if l >= 0 && (l as usize) < index.len() => l,
                _ => {
                    return Err(bad(
                        n + 1,
                        format!(
                            "class {class:?} is neither a class name nor an index < {}",
                            index.len()
                        ),
                    ));
                }
            },
        };
        let file_name = path.rsplit('/').next().unwrap_or(path).to_owned();
        out.insert(file_name, label);
    }
    Ok(out)
}
