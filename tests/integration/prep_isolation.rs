//! One bad file never costs a good one: prep-shards on a folder where damaged files (made here
//! from real ones) alternate with good ones, so that every bad file is followed by good files in
//! the same batch and on the same worker. The stored rows and the skipped list must be the same
//! on 1, 2 and 3 threads (byte for byte) and under 10 input orders (per key), every file Pillow
//! decodes must be stored with Pillow's pixels, and every file Pillow refuses must be skipped.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use twoview_formats::ShardSet;
use twoview_pipeline::prep::{self, PrepOptions, SplitSelection};
use twoview_pipeline::resize::Fit;

use crate::support::{self, Mix};

/// The marker segments before the scan of a well-formed JPEG: (offset of 0xFF, marker, total
/// length with the marker bytes).
fn segments(jpeg: &[u8]) -> Vec<(usize, u8, usize)> {
    let mut out = Vec::new();
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        let m = jpeg[i + 1];
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        out.push((i, m, 2 + len));
        if m == 0xDA {
            break;
        }
        i += 2 + len;
    }
    out
}

/// Damaged variants of one real JPEG, named by what was done to it. `every` thins out the
/// header cuts (1 = a cut at every offset of the header segments).
fn jpeg_damage(name: &str, jpeg: &[u8], every: usize, rng: &mut Mix) -> Vec<(String, Vec<u8>)> {
    let segs = segments(jpeg);
    let (sos_at, _, sos_len) = *segs.last().unwrap();
    assert_eq!(segs.last().unwrap().1, 0xDA, "{name}: a well-formed source");
    let scan = sos_at + sos_len;
    let mut out = Vec::new();
    for cut in (3..=scan).step_by(every) {
        out.push((format!("{name}-cut{cut}"), jpeg[..cut].to_vec()));
    }
    for _ in 0..12 {
        let cut = scan + 1 + rng.below(jpeg.len() - scan - 1);
        out.push((format!("{name}-scancut{cut}"), jpeg[..cut].to_vec()));
    }
    for &(at, m, len) in &segs {
        if matches!(m, 0xC4 | 0xDB | 0xC0 | 0xC1 | 0xC2 | 0xC9 | 0xCA | 0xDA) {
            for _ in 0..6 {
                let p = at + 2 + rng.below(len - 2);
                let mut v = jpeg.to_vec();
                v[p] ^= 1 + rng.below(255) as u8;
                out.push((format!("{name}-flip{m:02x}@{p}"), v));
            }
        }
        for (tag, new_len) in
            [("len0", 0usize), ("len1", 1), ("lenplus", len - 1), ("lenmax", 0xFFFF)]
        {
            let mut v = jpeg.to_vec();
            v[at + 2..at + 4].copy_from_slice(&(new_len as u16).to_be_bytes());
            out.push((format!("{name}-{tag}{m:02x}@{at}"), v));
        }
        if matches!(m, 0xC0..=0xCF) && !matches!(m, 0xC4 | 0xC8 | 0xCC) {
            let (h, w) = (at + 5, at + 7);
            for (tag, hv, wv) in [
                ("h0", 0u16, None),
                ("w0", 1, Some(0u16)),
                ("huge", 65535, Some(65535)),
                ("tiny", 1, Some(1)),
            ] {
                let mut v = jpeg.to_vec();
                v[h..h + 2].copy_from_slice(&hv.to_be_bytes());
                if let Some(wv) = wv {
                    v[w..w + 2].copy_from_slice(&wv.to_be_bytes());
                }
                out.push((format!("{name}-dims{tag}"), v));
            }
        }
    }
    // An empty APP segment and an oversized COM right after SOI.
    let mut v = jpeg[..2].to_vec();
    v.extend_from_slice(&[0xFF, 0xE5, 0x00, 0x02]);
    v.extend_from_slice(&jpeg[2..]);
    out.push((format!("{name}-emptyapp"), v));
    let mut v = jpeg[..2].to_vec();
    v.extend_from_slice(&[0xFF, 0xFE, 0xFF, 0xF0]);
    v.extend_from_slice(&jpeg[2..]);
    out.push((format!("{name}-bigcom"), v));
    out
}

fn png_damage(name: &str, png: &[u8], rng: &mut Mix) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for cut in [1, 8, 12, 20, 29, 33, 40] {
        out.push((format!("{name}-cut{cut}"), png[..cut].to_vec()));
    }
    for _ in 0..8 {
        let cut = 33 + rng.below(png.len() - 33);
        out.push((format!("{name}-cut{cut}"), png[..cut].to_vec()));
    }
    for _ in 0..8 {
        let p = 8 + rng.below(png.len() - 8);
        let mut v = png.to_vec();
        v[p] ^= 1 + rng.below(255) as u8;
        out.push((format!("{name}-flip@{p}"), v));
    }
    out
}

/// Each stored row: key → (width, height, pixels).
type Rows = BTreeMap<String, (u16, u16, Vec<u8>)>;

fn prep_run(
    root: &Path,
    out: &Path,
    threads: usize,
    order: Option<u64>,
) -> (Rows, BTreeMap<String, String>) {
    let scan = prep::scan(root, SplitSelection::All, None).unwrap();
    let opts = PrepOptions {
        fit: Fit::ShortSide(100_000), // never resized: stored pixels are the decoder's
        rows_per_shard: 200,
        batch_rows: 48,
        shuffle_seed: order,
        ..Default::default()
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let summary = pool
        .install(|| prep::run(&scan, out, &opts, "test", &AtomicBool::new(false), |_| {}))
        .unwrap();
    let set = ShardSet::open(out, "train").unwrap();
    let rows = (0..set.len())
        .map(|i| {
            let r = set.row(i).unwrap();
            (r.key.to_owned(), (r.width, r.height, r.pixels.to_vec()))
        })
        .collect();
    let skipped = summary.skipped.into_iter().map(|s| (s.key, s.reason)).collect();
    (rows, skipped)
}

/// The keys where two maps differ (at most 12 listed), for a message a person can read.
fn differences<V: PartialEq + std::fmt::Debug>(
    a: &BTreeMap<String, V>,
    b: &BTreeMap<String, V>,
    show: impl Fn(&V) -> String,
) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let diff: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let s = |m: &BTreeMap<String, V>| m.get(k).map_or("(absent)".into(), &show);
            format!("  {k}: {} | {}", s(a), s(b))
        })
        .collect();
    let n = diff.len();
    let mut out: Vec<String> = diff.into_iter().take(12).collect();
    if n > 12 {
        out.push(format!("  … and {} more", n - 12));
    }
    out
}

fn assert_same<V: PartialEq + std::fmt::Debug>(
    what: &str,
    a: &BTreeMap<String, V>,
    b: &BTreeMap<String, V>,
    show: impl Fn(&V) -> String,
) {
    let d = differences(a, b, show);
    assert!(d.is_empty(), "{what}: differs by key (expected | got):\n{}", d.join("\n"));
}

fn pixels(v: &(u16, u16, Vec<u8>)) -> String {
    format!("{}x{} stored, xxh3 {:016x}", v.0, v.1, xxhash_rust::xxh3::xxh3_64(&v.2))
}

fn shard_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "arrow"))
        .map(|p| {
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())
        })
        .collect()
}

#[test]
fn bad_files_interleaved_with_good_ones_cost_nothing_on_any_thread_count_or_order() {
    let Some(imagenette) = support::imagenette() else { return };
    let work = support::scratch_dir("prep_isolation");
    // Good sources: real photos, Pillow-made variants (CMYK, grayscale, progressive, 4:4:4,
    // restart markers, PNGs), and libjpeg-turbo's own arithmetic-coded and progressive images.
    let photos = support::imagenette_sample(&imagenette, 4, 2);
    let odd = work.join("odd");
    support::venv_python(
        "decode_reference.py",
        &["--make-odd".as_ref(), photos[0].as_os_str(), odd.as_os_str()],
    )
    .unwrap_or_else(|| panic!("the venv is needed"));
    let mut good: Vec<(String, Vec<u8>)> = photos
        .iter()
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), std::fs::read(p).unwrap()))
        .collect();
    for f in [
        "cmyk.jpg",
        "gray.JPEG",
        "progressive.jpg",
        "s444.jpg",
        "restart.jpg",
        "rgba.png",
        "palette.png",
    ] {
        good.push((f.replace('.', "_"), std::fs::read(odd.join(f)).unwrap()));
    }
    if let Some(corpus) = support::jpeg_corpus() {
        for f in ["testimgari.jpg", "testimgint.jpg"] {
            good.push((
                f.replace('.', "_"),
                std::fs::read(corpus.join("libjpeg-turbo-testimages").join(f)).unwrap(),
            ));
        }
    }
    let find = |n: &str| good.iter().find(|g| g.0 == n).map(|g| g.1.clone());
    let mut rng = Mix(14);
    let mut bad = jpeg_damage("photo", &good[0].1, 1, &mut rng);
    for (name, every) in
        [("progressive_jpg", 5), ("cmyk_jpg", 5), ("testimgari_jpg", 5), ("s444_jpg", 9)]
    {
        if let Some(bytes) = find(name) {
            bad.extend(jpeg_damage(name, &bytes, every, &mut rng));
        }
    }
    bad.extend(png_damage("rgba", &find("rgba_png").unwrap(), &mut rng));
    // Interleaved by name: bad, good, bad, good … (a good file after every bad one).
    let root = work.join("root");
    let class = root.join("c");
    std::fs::create_dir_all(&class).unwrap();
    for (i, (name, bytes)) in bad.iter().enumerate() {
        let ext = if name.starts_with("rgba") { "png" } else { "jpg" };
        std::fs::write(class.join(format!("{i:05}a-bad-{name}.{ext}")), bytes).unwrap();
        let (gname, gbytes) = &good[i % good.len()];
        let ext = if gname.ends_with("png") { "png" } else { "jpg" };
        std::fs::write(class.join(format!("{i:05}b-good-{gname}.{ext}")), gbytes).unwrap();
    }
    eprintln!("{} damaged files interleaved with {} good ones", bad.len(), bad.len());

    // 1, 2 and 3 threads: the same shard bytes and the same skipped list.
    let (base_rows, base_skipped) = prep_run(&root, &work.join("t1"), 1, None);
    let base_bytes = shard_bytes(&work.join("t1"));
    for t in [2, 3] {
        let out = work.join(format!("t{t}"));
        let (rows, skipped) = prep_run(&root, &out, t, None);
        assert_same(&format!("skipped list, {t} threads vs 1"), &base_skipped, &skipped, |s| {
            s.clone()
        });
        assert_same(&format!("stored rows, {t} threads vs 1"), &base_rows, &rows, pixels);
        assert!(shard_bytes(&out) == base_bytes, "shard bytes on {t} threads differ from 1 thread");
        // Each run stores ~370 MB of undecimated pixels: keep at most two on disk at a time.
        std::fs::remove_dir_all(&out).unwrap();
    }
    std::fs::remove_dir_all(work.join("t1")).unwrap();
    // 10 orders: the same pixels per key and the same skipped list; same seed, same bytes.
    for seed in 0..10u64 {
        let out = work.join(format!("order{seed}"));
        let (rows, skipped) = prep_run(&root, &out, 2, Some(seed));
        assert_same(
            &format!("skipped list, order {seed} vs sorted"),
            &base_skipped,
            &skipped,
            |s| s.clone(),
        );
        assert_same(&format!("stored rows, order {seed} vs sorted"), &base_rows, &rows, pixels);
        if seed == 0 {
            let again = work.join("order0-again");
            prep_run(&root, &again, 3, Some(0));
            assert!(shard_bytes(&again) == shard_bytes(&out), "same seed, other bytes");
            std::fs::remove_dir_all(&again).unwrap();
        }
        std::fs::remove_dir_all(&out).unwrap();
    }

    // Pillow: every file it decodes is stored with its pixels; every file it refuses is skipped.
    let reference = work.join("pillow");
    support::venv_python("decode_reference.py", &[root.as_os_str(), reference.as_os_str()])
        .unwrap();
    let verdicts = std::fs::read_to_string(reference.join("verdicts.tsv")).unwrap();
    let mut problems = Vec::new();
    let (mut ok, mut refused) = (0, 0);
    for line in verdicts.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let key = f[0].to_owned();
        match (f[1], base_rows.get(&key)) {
            ("ok", Some((w, h, px))) => {
                ok += 1;
                let want = image::open(reference.join(format!("{key}.png"))).unwrap().into_rgb8();
                if (want.width(), want.height()) != (*w as u32, *h as u32) || want.as_raw() != px {
                    problems.push(format!("{key}: stored pixels differ from Pillow's"));
                }
            }
            ("ok", None) => problems.push(format!(
                "{key}: Pillow decodes it, prep skipped it ({})",
                base_skipped.get(&key).map_or("?", |s| s.as_str())
            )),
            (_, Some(_)) => {
                problems.push(format!("{key}: Pillow refuses it ({}), prep stored it", f[2]))
            }
            (_, None) => refused += 1,
        }
    }
    eprintln!("Pillow decodes {ok} (all stored), refuses {refused} (all skipped)");
    assert!(
        problems.is_empty(),
        "{} disagreements with Pillow:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(ok + refused, base_rows.len() + base_skipped.len());

    // Every skip reason is true: a cut file is truncated, whatever the worker saw before it.
    for (key, reason) in &base_skipped {
        assert!(key.contains("-bad-"), "a good file was skipped: {key}: {reason}");
        if key.contains("cut") && !key.contains("-bad-rgba") {
            assert!(reason.starts_with("truncated:"), "{key}: {reason}");
        }
        assert!(!reason.contains("4294967295"), "{key}: {reason}");
    }
    // Passed: nothing here is needed to read a failure.
    std::fs::remove_dir_all(&work).unwrap();
}
