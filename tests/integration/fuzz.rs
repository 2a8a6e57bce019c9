//! Seeded mutation fuzzing of every reader of outside bytes, bounded in time so that it runs in
//! CI: the image decoder (JPEG/PNG), the shard reader (Arrow files and the manifest), and the
//! TOML of recipes and training configurations.
//!
//! Each target first replays its regression corpus (`tests/fuzz-corpus/<target>/`: every input
//! that ever failed, kept), then mutates seed inputs for `TWOVIEW_FUZZ_SECONDS` (default 25 s)
//! per target. Input `i` of a run is a pure function of (`TWOVIEW_FUZZ_SEED`, `i`), printed at
//! the start, so any failure replays. A failing input is written to
//! `target/tmp/fuzz-found/<target>/`, named in the failure: copy it into the corpus with the fix.
//! `TWOVIEW_FUZZ_SAVE=1` writes every input there before it is tried (for a crash in C code,
//! which no test can catch).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use twoview_formats::{Encoding, ShardSet};
use twoview_pipeline::decode::{DecodeOptions, Decoder};
use twoview_pipeline::prep::{self, PrepOptions, SplitSelection, StoreEncoding};
use twoview_pipeline::resize::Fit;

use crate::support::{self, Mix};

fn seconds() -> Duration {
    let s = std::env::var("TWOVIEW_FUZZ_SECONDS").ok().and_then(|v| v.parse::<f64>().ok());
    Duration::from_secs_f64(s.unwrap_or(25.0))
}

fn base_seed() -> u64 {
    std::env::var("TWOVIEW_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20261201)
}

/// Byte-level mutations, with a bias toward what breaks container formats: lengths after a
/// 0xFF marker byte, cuts, splices from another seed.
fn mutate(input: &[u8], other: &[u8], rng: &mut Mix) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let n = v.len().max(1);
        match rng.below(9) {
            0 => {
                if !v.is_empty() {
                    let p = rng.below(v.len());
                    v[p] ^= 1 << rng.below(8);
                }
            }
            1 => {
                if !v.is_empty() {
                    let p = rng.below(v.len());
                    let r = rng.next() as u8;
                    v[p] = *rng.pick(&[0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF, r]);
                }
            }
            2 => v.truncate(rng.below(n)),
            3 => {
                let a = rng.below(n);
                let b = (a + 1 + rng.below(64)).min(v.len());
                if a < b {
                    v.drain(a..b);
                }
            }
            4 => {
                let p = rng.below(v.len() + 1);
                let k = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..k).map(|_| rng.next() as u8).collect();
                v.splice(p..p, bytes);
            }
            5 => {
                let a = rng.below(n);
                let b = (a + 1 + rng.below(256)).min(v.len());
                if a < b {
                    let chunk = v[a..b].to_vec();
                    let p = rng.below(v.len() + 1);
                    v.splice(p..p, chunk);
                }
            }
            6 => {
                if !other.is_empty() {
                    let p = rng.below(v.len() + 1);
                    let q = rng.below(other.len());
                    v.truncate(p);
                    v.extend_from_slice(&other[q..]);
                }
            }
            7 => {
                // An interesting big-endian u16 right after a 0xFF (a marker's length field).
                let ffs: Vec<usize> = v
                    .iter()
                    .enumerate()
                    .filter(|&(i, &b)| b == 0xFF && i + 3 < v.len())
                    .map(|(i, _)| i)
                    .take(64)
                    .collect();
                if !ffs.is_empty() {
                    let p = *rng.pick(&ffs) + 2;
                    let r = rng.next() as u16;
                    let val: u16 = *rng.pick(&[0, 1, 2, 3, 0x7FFF, 0xFFFF, r]);
                    v[p..p + 2].copy_from_slice(&val.to_be_bytes());
                }
            }
            _ => {
                // An interesting u32 anywhere (PNG lengths and sizes, Arrow offsets).
                if v.len() >= 4 {
                    let p = rng.below(v.len() - 3);
                    let val: u32 = *rng.pick(&[0, 1, 0x7FFF_FFFF, 0xFFFF_FFFF, 0x0001_0000]);
                    let bytes =
                        if rng.below(2) == 0 { val.to_be_bytes() } else { val.to_le_bytes() };
                    v[p..p + 4].copy_from_slice(&bytes);
                }
            }
        }
    }
    v
}

/// The folder a target writes failing inputs to.
fn found_dir(target: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-found").join(target);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A target's regression corpus: every input ever found, replayed before the mutations.
fn regressions(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = support::repo_root().join("tests/fuzz-corpus").join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_file())
                .map(|e| {
                    (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Aborts the process when one input runs longer than `limit` (a hang), after writing it out.
struct Watchdog {
    current: Arc<Mutex<(Instant, Vec<u8>)>>,
    done: Arc<AtomicBool>,
}

impl Watchdog {
    fn start(target: &'static str, limit: Duration) -> Self {
        let current = Arc::new(Mutex::new((Instant::now(), Vec::new())));
        let done = Arc::new(AtomicBool::new(false));
        let (c, d) = (current.clone(), done.clone());
        std::thread::spawn(move || {
            while !d.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let g = c.lock().unwrap_or_else(|e| e.into_inner());
                if g.0.elapsed() > limit {
                    let p = found_dir(target).join("hang.bin");
                    let _ = std::fs::write(&p, &g.1);
                    eprintln!("fuzz {target}: one input ran over {limit:?}; it is {}", p.display());
                    std::process::abort();
                }
            }
        });
        Self { current, done }
    }
    fn begin(&self, input: &[u8]) {
        let mut g = self.current.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = Instant::now();
        g.1.clear();
        g.1.extend_from_slice(input);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn save_each() -> bool {
    std::env::var_os("TWOVIEW_FUZZ_SAVE").is_some()
}

/// Seeds for the decoder: real photos, Pillow-made odd variants where the venv is there, and
/// the corpus's small JPEGs and PNGs (CMYK, progressive, arithmetic, 16-bit, palette, …).
fn image_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    if let Some(root) = support::imagenette() {
        for p in support::imagenette_sample(&root, 2, 1) {
            seeds.push(std::fs::read(p).unwrap());
        }
    }
    if let Some(corpus) = support::jpeg_corpus() {
        // Every JPEG/PNG under 48 kB (by name, then by content).
        for p in twoview_pipeline::decode::find_images(&[corpus], usize::MAX).unwrap() {
            if std::fs::metadata(&p).unwrap().len() < 48_000 {
                let bytes = std::fs::read(&p).unwrap();
                if twoview_pipeline::decode::sniff(&bytes).is_some() {
                    seeds.push(bytes);
                }
            }
        }
    }
    seeds
}

#[test]
fn fuzz_decoder_never_panics_never_leaks_into_the_next_image() {
    let seeds = image_seeds();
    if seeds.is_empty() {
        return;
    }
    let good = seeds[0].clone();
    let opts = DecodeOptions { max_pixels: 4 << 20, ..Default::default() };
    let want = Decoder::new().decode(&good, "good", &opts).unwrap().image;
    // 4 Mi pixels: RGB output, CMYK scratch, a 16-bit RGBA PNG at 8 bytes per pixel, slack.
    let alloc_bound = 48usize << 20;
    let found = found_dir("decode");
    let dog = Watchdog::start("decode", Duration::from_secs(20));
    let mut dec = Decoder::new();
    let mut failures: Vec<String> = Vec::new();
    let try_one = |name: &str, input: &[u8], dec: &mut Decoder| -> Option<String> {
        dog.begin(input);
        let (r, largest) = support::largest_allocation(|| {
            catch_unwind(AssertUnwindSafe(|| {
                let _ = dec.decode(input, name, &opts);
            }))
        });
        let after = dec.decode(&good, "good", &opts).map(|d| d.image);
        let problem = if r.is_err() {
            Some("panicked")
        } else if largest > alloc_bound {
            Some("allocated over the bound")
        } else if after.as_ref().map(|a| a.data() != want.data()).unwrap_or(true) {
            Some("changed the next decode of a good file")
        } else {
            None
        };
        if let Some(p) = problem {
            let file = found.join(format!("{:016x}.bin", xxhash_rust::xxh3::xxh3_64(input)));
            std::fs::write(&file, input).unwrap();
            *dec = Decoder::new();
            return Some(format!(
                "{name}: {p} (largest allocation {largest} B): {}",
                file.display()
            ));
        }
        None
    };
    for (name, input) in regressions("decode") {
        failures.extend(try_one(&name, &input, &mut dec));
    }
    let (seed, budget, start) = (base_seed(), seconds(), Instant::now());
    let mut i = 0u64;
    while start.elapsed() < budget && failures.len() < 20 {
        let mut rng = Mix::for_input(seed, i);
        let a = rng.below(seeds.len());
        let b = rng.below(seeds.len());
        let input = mutate(&seeds[a], &seeds[b], &mut rng);
        if save_each() {
            std::fs::write(found.join("current.bin"), &input).unwrap();
        }
        failures.extend(try_one(&format!("seed {seed} input {i}"), &input, &mut dec));
        i += 1;
    }
    eprintln!(
        "fuzz decode: seed {seed}, {i} inputs in {:.0?} from {} seeds",
        start.elapsed(),
        seeds.len()
    );
    assert!(failures.is_empty(), "{} failing inputs:\n{}", failures.len(), failures.join("\n"));
    assert!(i > 200, "only {i} inputs in the budget");
}

/// A small shard folder: raw and JPEG rows in two shards of several record batches.
fn shard_folder(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let root = dir.join("images");
    for c in ["a", "b"] {
        std::fs::create_dir_all(root.join(c)).unwrap();
    }
    let mut enc = twoview_pipeline::decode::JpegEncoder::new();
    for i in 0..10u32 {
        let (w, h) = (16 + 3 * i, 12 + 2 * i);
        let data = (0..w * h * 3).map(|k| (k * 7 + i * 31) as u8).collect();
        let img = twoview_pipeline::RgbImage::try_from_vec(data, w, h).unwrap();
        let mut out = Vec::new();
        enc.encode(img.view(), 90, &mut out).unwrap();
        std::fs::write(root.join(if i % 2 == 0 { "a" } else { "b" }).join(format!("{i}.jpg")), out)
            .unwrap();
    }
    let scan = prep::scan(&root, SplitSelection::All, None).unwrap();
    let shards = dir.join("shards");
    let opts = PrepOptions {
        fit: Fit::ShortSide(20),
        rows_per_shard: 6,
        batch_rows: 2,
        encoding: StoreEncoding::Auto,
        raw_max_bytes: 1000,
        ..Default::default()
    };
    prep::run(&scan, &shards, &opts, "fuzz", &AtomicBool::new(false), |_| {}).unwrap();
    std::fs::read_dir(&shards)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// Opens the set, reads every row, decodes JPEG rows and verifies the checksums, as the
/// loader and `shards verify` do. `Err` carries the first error's message.
fn read_everything(dir: &Path) -> Result<(), String> {
    let set = ShardSet::open(dir, "train").map_err(|e| e.to_string())?;
    let mut dec = Decoder::new();
    for i in 0..set.len() {
        let row = set.row(i).map_err(|e| e.to_string())?;
        if row.encoding == Encoding::Jpeg {
            let _ = dec.decode(row.pixels, row.key, &DecodeOptions::default());
        }
    }
    set.verify_checksums().map_err(|e| e.to_string())
}

#[test]
fn fuzz_shard_reader_errors_name_the_file_never_panic() {
    let work = support::scratch_dir("fuzz_shards");
    let files = shard_folder(&work);
    let names: Vec<&String> = files.keys().collect();
    assert!(names.iter().filter(|n| n.ends_with(".arrow")).count() >= 2, "{names:?}");
    let dir = work.join("mutated");
    std::fs::create_dir_all(&dir).unwrap();
    for (n, b) in &files {
        std::fs::write(dir.join(n), b).unwrap();
    }
    read_everything(&dir).expect("the unmutated folder reads");
    let found = found_dir("shards");
    let dog = Watchdog::start("shards", Duration::from_secs(20));
    let mut failures: Vec<String> = Vec::new();
    let try_one = |label: &str, name: &str, input: &[u8]| -> Option<String> {
        dog.begin(input);
        std::fs::write(dir.join(name), input).unwrap();
        let (r, largest) = support::largest_allocation(|| catch_unwind(|| read_everything(&dir)));
        std::fs::write(dir.join(name), &files[name]).unwrap();
        let problem = match &r {
            Err(_) => Some("panicked".to_owned()),
            _ if largest > 64 << 20 => Some(format!("allocated {largest} bytes")),
            // A changed shard must be caught (at the latest by its checksum); a changed manifest
            // that still parses may be harmless (a reformatted number), but never panics.
            Ok(Ok(())) if name.ends_with(".arrow") && input != files[name].as_slice() => {
                Some("a changed shard passed every check".into())
            }
            Ok(Err(msg)) if !files.keys().any(|f| msg.contains(f.as_str())) => {
                Some(format!("error names no file: {msg}"))
            }
            _ => None,
        };
        problem.map(|p| {
            let file = found.join(format!("{name}.{:016x}", xxhash_rust::xxh3::xxh3_64(input)));
            std::fs::write(&file, input).unwrap();
            format!("{label} ({name}): {p}: {}", file.display())
        })
    };
    for (rel, input) in regressions("shards") {
        // Corpus files are named <target file>.<hash>.
        let name = rel.rsplit_once('.').map_or(rel.as_str(), |(n, _)| n).to_owned();
        if files.contains_key(&name) {
            failures.extend(try_one(&rel, &name, &input));
        }
    }
    let (seed, budget, start) = (base_seed(), seconds(), Instant::now());
    let mut i = 0u64;
    while start.elapsed() < budget && failures.len() < 20 {
        let mut rng = Mix::for_input(seed ^ 0x5A4D, i);
        let name = rng.pick(&names).as_str();
        let other = files[rng.pick(&names).as_str()].clone();
        let input = if name == "manifest.json" && rng.below(2) == 0 {
            mutate_json(&files[name], &mut rng)
        } else {
            mutate(&files[name], &other, &mut rng)
        };
        failures.extend(try_one(&format!("seed {seed} input {i}"), name, &input));
        i += 1;
    }
    eprintln!("fuzz shards: seed {seed}, {i} inputs in {:.0?}", start.elapsed());
    assert!(failures.is_empty(), "{} failing inputs:\n{}", failures.len(), failures.join("\n"));
    assert!(i > 200, "only {i} inputs in the budget");
}

/// Manifest mutations that keep it JSON: one value somewhere replaced by an odd one.
fn mutate_json(text: &[u8], rng: &mut Mix) -> Vec<u8> {
    use serde_json::{Value, json};
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Object(m) => m.values().map(count).sum(),
            Value::Array(a) => a.iter().map(count).sum(),
            _ => 0,
        }
    }
    fn replace_nth(v: &mut Value, n: &mut usize, with: &Value) -> bool {
        if *n == 0 {
            *v = with.clone();
            return true;
        }
        *n -= 1;
        match v {
            Value::Object(m) => m.values_mut().any(|x| replace_nth(x, n, with)),
            Value::Array(a) => a.iter_mut().any(|x| replace_nth(x, n, with)),
            _ => false,
        }
    }
    let mut v: Value = serde_json::from_slice(text).unwrap();
    let odd = [
        json!(null),
        json!(-1),
        json!(u64::MAX),
        json!(0),
        json!("../../etc/passwd"),
        json!("/tmp"),
        json!([]),
        json!({}),
        json!(1.5),
        json!("x"),
    ];
    let mut n = rng.below(count(&v));
    let with = rng.pick(&odd).clone();
    replace_nth(&mut v, &mut n, &with);
    serde_json::to_vec_pretty(&v).unwrap()
}

/// Every leaf of a TOML table: (path for messages, the leaf's own key).
fn toml_leaves(v: &toml::Value, path: String, out: &mut Vec<(String, String)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, x) in t {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                toml_leaves(x, p, out);
            }
        }
        toml::Value::Array(a) if a.iter().any(|x| x.is_table() || x.is_array()) => {
            for (i, x) in a.iter().enumerate() {
                toml_leaves(x, format!("{path}[{i}]"), out);
            }
        }
        _ => {
            let key = path.rsplit(['.', '[']).next().unwrap_or("").to_owned();
            out.push((path, key));
        }
    }
}

/// Replaces, removes or adds beside the leaf at `path`; returns the key an error must name.
fn mutate_toml_leaf(root: &mut toml::Value, path: &str, rng: &mut Mix) -> String {
    let mut parts: Vec<String> = Vec::new();
    for seg in path.split('.') {
        match seg.split_once('[') {
            Some((k, rest)) => {
                parts.push(k.to_owned());
                parts.extend(rest.split('[').map(|i| format!("[{}", i.trim_end_matches(']'))));
            }
            None => parts.push(seg.to_owned()),
        }
    }
    let last = parts.pop().unwrap();
    let mut at = &mut *root;
    for p in &parts {
        at = match p.strip_prefix('[') {
            Some(i) => &mut at.as_array_mut().unwrap()[i.parse::<usize>().unwrap()],
            None => at.as_table_mut().unwrap().get_mut(p).unwrap(),
        };
    }
    let odd = [
        toml::Value::String("x".into()),
        toml::Value::Integer(-1),
        toml::Value::Float(2.5),
        toml::Value::Float(f64::NAN),
        toml::Value::Float(-0.5),
        toml::Value::Integer(1 << 40),
        toml::Value::Boolean(true),
        toml::Value::Array(vec![]),
    ];
    let t = at.as_table_mut().unwrap();
    match rng.below(10) {
        0 => {
            t.remove(&last);
            last
        }
        1 => {
            t.insert("bogus_key".into(), toml::Value::Integer(1));
            "bogus_key".into()
        }
        _ => {
            t.insert(last.clone(), rng.pick(&odd).clone());
            last
        }
    }
}

/// Whether `msg` names `key`: as TOML's `in \`a.b.key\``, a backticked field, or `….key`.
fn names_key(msg: &str, key: &str) -> bool {
    msg.contains(&format!("`{key}`"))
        || msg.contains(&format!(".{key}`"))
        || msg.contains(&format!(".{key} "))
        || msg.contains(&format!(".{key}]"))
        || msg.contains(&format!("{key} ="))
        || msg.contains(&format!("{key} must"))
}

#[test]
fn fuzz_recipe_and_config_toml_errors_name_the_key() {
    use twoview_model::train::TrainConfig;
    use twoview_pipeline::augment::Recipe;
    let recipes: Vec<String> = ["mocov3_vit", "mocov3_resnet", "byol", "simclr"]
        .iter()
        .map(|n| Recipe::preset(n).unwrap().to_toml())
        .collect();
    let config = toml::to_string(&TrainConfig::default()).unwrap();
    let dog = Watchdog::start("toml", Duration::from_secs(20));
    let mut failures: Vec<String> = Vec::new();
    let (seed, budget, start) = (base_seed(), seconds() / 2, Instant::now());
    let mut i = 0u64;
    while start.elapsed() < budget && failures.len() < 20 {
        let mut rng = Mix::for_input(seed ^ 0x7031, i);
        let is_recipe = rng.below(2) == 0;
        let text = if is_recipe { rng.pick(&recipes).clone() } else { config.clone() };
        let parse = |s: &str| -> Result<(), String> {
            if is_recipe {
                Recipe::from_toml(s, "fuzz.toml").map(|_| ()).map_err(|e| e.to_string())
            } else {
                let table: toml::Table = toml::from_str(s).map_err(|e| e.to_string())?;
                TrainConfig::from_table(table, "fuzz.toml").map(|_| ()).map_err(|e| e.to_string())
            }
        };
        let (input, key) = if rng.below(4) == 0 {
            let bytes = mutate(text.as_bytes(), text.as_bytes(), &mut rng);
            (String::from_utf8_lossy(&bytes).into_owned(), None)
        } else {
            let mut v: toml::Value = toml::from_str(&text).unwrap();
            let mut leaves = Vec::new();
            toml_leaves(&v, String::new(), &mut leaves);
            let (path, _) = rng.pick(&leaves).clone();
            let key = mutate_toml_leaf(&mut v, &path, &mut rng);
            (toml::to_string(&v).unwrap(), Some((path, key)))
        };
        dog.begin(input.as_bytes());
        match catch_unwind(AssertUnwindSafe(|| parse(&input))) {
            Err(_) => failures.push(format!("input {i}: panicked on:\n{input}")),
            Ok(Err(msg)) => {
                if let Some((path, key)) = &key
                    && !names_key(&msg, key)
                {
                    failures.push(format!(
                        "input {i}: changing {path} gave an error naming no key: {msg}"
                    ));
                }
            }
            Ok(Ok(())) => {}
        }
        i += 1;
    }
    eprintln!("fuzz toml: seed {seed}, {i} inputs in {:.0?}", start.elapsed());
    failures.sort();
    failures.dedup_by(|a, b| a.split_once(':').map(|x| x.1) == b.split_once(':').map(|x| x.1));
    assert!(failures.is_empty(), "{} failing inputs:\n{}", failures.len(), failures.join("\n"));
}
