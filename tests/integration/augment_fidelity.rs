//! The augmentation ops against the real thing: torchvision 0.26 on PIL images and PIL's own
//! filters (python/augment_reference.py), on real imagenette224 photos, with the same
//! parameters. Tolerances per op are stated in `TOLERANCES` and in docs/augment.md.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;

use serde::Deserialize;
use twoview_pipeline::augment::{
    self, BlurMethod, CropBox, GaussianBlur, JitterParams, RandomResizedCrop,
};
use twoview_pipeline::resize::Resizer;
use twoview_pipeline::rng::Rng;
use twoview_pipeline::{RgbImage, RgbMut};

use crate::support;

/// (op, max mean |diff| over an image, max |diff| of any byte), in levels of 255.
const TOLERANCES: &[(&str, f64, u8)] = &[
    // PIL's bilinear resample itself (pipeline/src/resize/bilinear.rs).
    ("crop_resize", 0.0, 0),
    ("hflip", 0.0, 0),
    ("brightness", 0.0, 0),
    ("contrast", 0.0, 0),
    ("saturation", 0.0, 0),
    ("hue", 0.0, 0),
    ("grayscale", 0.0, 0),
    ("blur", 0.0, 0),
    ("solarize", 0.0, 0),
    ("jitter", 0.0, 0),
];

#[derive(Deserialize)]
struct Case {
    src: String,
    src_w: u32,
    src_h: u32,
    op: String,
    params: serde_json::Value,
    out: String,
    out_w: u32,
    out_h: u32,
}

fn read_rgb(dir: &Path, name: &str, w: u32, h: u32) -> RgbImage {
    RgbImage::try_from_vec(std::fs::read(dir.join(name)).unwrap(), w, h).unwrap()
}

fn f(p: &serde_json::Value, key: &str) -> f32 {
    p[key].as_f64().unwrap_or_else(|| panic!("param {key} in {p}")) as f32
}

fn u(p: &serde_json::Value, key: &str) -> u32 {
    p[key].as_u64().unwrap_or_else(|| panic!("param {key} in {p}")) as u32
}

/// Our op on `src` with the case's parameters.
fn ours(case: &Case, src: &RgbImage) -> RgbImage {
    let p = &case.params;
    if case.op == "crop_resize" {
        let crop = CropBox {
            top: u(p, "top"),
            left: u(p, "left"),
            height: u(p, "height"),
            width: u(p, "width"),
        };
        let mut out = RgbImage::new(u(p, "out_w"), u(p, "out_h"));
        Resizer::new().crop_resize(src.view(), crop, &mut out.view_mut()).unwrap();
        return out;
    }
    let mut img = src.clone();
    let v: &mut RgbMut<'_> = &mut img.view_mut();
    match case.op.as_str() {
        "hflip" => augment::hflip(v),
        "brightness" => augment::adjust_brightness(v, f(p, "factor")),
        "contrast" => augment::adjust_contrast(v, f(p, "factor")),
        "saturation" => augment::adjust_saturation(v, f(p, "factor")),
        "hue" => augment::adjust_hue(v, f(p, "factor")),
        "grayscale" => augment::grayscale(v),
        "blur" => {
            let blur = GaussianBlur { sigma: (0.1, 2.0), method: BlurMethod::PilBox };
            blur.apply(v, f(p, "sigma"), &mut Default::default())
        }
        "solarize" => augment::solarize(v, u(p, "threshold") as u8),
        "jitter" => {
            let order: Vec<u8> =
                p["order"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u8).collect();
            JitterParams {
                order: order.try_into().unwrap(),
                brightness: Some(f(p, "brightness")),
                contrast: Some(f(p, "contrast")),
                saturation: Some(f(p, "saturation")),
                hue: Some(f(p, "hue")),
            }
            .apply(v)
        }
        other => panic!("unknown op {other}"),
    }
    img
}

#[test]
fn every_op_matches_torchvision_and_pil_on_real_photos() {
    let Some(root) = support::imagenette() else { return };
    let images = support::imagenette_sample(&root, 10, 1);
    let dir = support::scratch_dir("augment_reference");
    let mut args: Vec<&OsStr> =
        vec!["ops".as_ref(), "--out".as_ref(), dir.as_os_str(), "--images".as_ref()];
    args.extend(images.iter().map(|p| p.as_os_str()));
    let Some(()) = support::venv_python("augment_reference.py", &args) else { return };

    let cases: Vec<Case> =
        serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    assert!(cases.len() >= 10 * 20, "{} cases", cases.len());
    // Worst (mean, max) per op over all images and parameters.
    let mut worst: BTreeMap<String, (f64, u8, String)> = BTreeMap::new();
    for case in &cases {
        let src = read_rgb(&dir, &case.src, case.src_w, case.src_h);
        let want = read_rgb(&dir, &case.out, case.out_w, case.out_h);
        let got = ours(case, &src);
        assert_eq!(
            (got.width, got.height),
            (want.width, want.height),
            "{} {}",
            case.op,
            case.params
        );
        let diffs = got.data.iter().zip(&want.data).map(|(a, b)| a.abs_diff(*b));
        let (sum, max) = diffs.fold((0u64, 0u8), |(s, m), d| (s + u64::from(d), m.max(d)));
        let mean = sum as f64 / got.data.len() as f64;
        let w = worst.entry(case.op.clone()).or_insert((0.0, 0, String::new()));
        if mean > w.0 || max > w.1 {
            *w = (w.0.max(mean), w.1.max(max), format!("{} on {}", case.params, case.src));
        }
    }
    let mut failures = Vec::new();
    for (op, (mean, max, at)) in &worst {
        let &(_, tol_mean, tol_max) =
            TOLERANCES.iter().find(|t| t.0 == op).expect("a tolerance per op");
        eprintln!(
            "{op:12} worst mean |diff| {mean:.4}, worst max |diff| {max}  (tolerance {tol_mean}, {tol_max})"
        );
        if *mean > tol_mean || *max > tol_max {
            failures.push(format!("{op}: mean {mean:.4} max {max} (worst at {at})"));
        }
    }
    assert_eq!(worst.len(), TOLERANCES.len(), "every op was exercised");
    assert!(failures.is_empty(), "outside tolerance:\n{}", failures.join("\n"));
}

/// Two-sample Kolmogorov–Smirnov statistic.
fn ks(mut a: Vec<f64>, mut b: Vec<f64>) -> f64 {
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0, 0, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

#[test]
fn crop_sampler_distributions_match_torchvision() {
    let n = 20_000usize;
    let dir = support::scratch_dir("crop_sampler");
    // A landscape photo, a strip where most tries fail (fallback), a square with crop_min 0.2.
    for (w, h, lo) in [(341u32, 256u32, 0.08f64), (500, 100, 0.08), (224, 224, 0.2)] {
        let out = dir.join(format!("{w}x{h}.json"));
        let (ws, hs, los) = (w.to_string(), h.to_string(), lo.to_string());
        let fixed = [
            "crops", "--width", &ws, "--height", &hs, "--scale", &los, "1.0", "--n", "20000",
            "--out",
        ];
        let args: Vec<&OsStr> = fixed.iter().map(OsStr::new).chain([out.as_os_str()]).collect();
        let Some(()) = support::venv_python("augment_reference.py", &args) else { return };
        let theirs: Vec<[u32; 4]> = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let crop = RandomResizedCrop::with_crop_min(lo);
        let mut rng = Rng::from_seed(42);
        let mine: Vec<[u32; 4]> = (0..n)
            .map(|_| {
                let b = crop.sample(w, h, &mut rng);
                [b.top, b.left, b.height, b.width]
            })
            .collect();
        let area =
            |v: &[[u32; 4]]| v.iter().map(|b| f64::from(b[2] * b[3]) / f64::from(w * h)).collect();
        let log_ratio =
            |v: &[[u32; 4]]| v.iter().map(|b| (f64::from(b[3]) / f64::from(b[2])).ln()).collect();
        let centre_x = |v: &[[u32; 4]]| {
            v.iter().map(|b| f64::from(2 * b[1] + b[3]) / f64::from(2 * w)).collect()
        };
        // KS critical value at alpha = 0.001 for two samples of n: 1.949 * sqrt(2/n).
        let crit = 1.949 * (2.0 / n as f64).sqrt();
        for (what, d) in [
            ("area fraction", ks(area(&mine), area(&theirs))),
            ("log aspect ratio", ks(log_ratio(&mine), log_ratio(&theirs))),
            ("crop centre x", ks(centre_x(&mine), centre_x(&theirs))),
        ] {
            eprintln!("{w}x{h} scale ({lo}, 1): KS D for {what} = {d:.4} (critical {crit:.4})");
            assert!(
                d < crit,
                "{w}x{h} scale ({lo}, 1): {what} differs from torchvision: D = {d:.4}"
            );
        }
    }
}

/// One view's draws after the crop, as python/augment_reference.py `draws` writes them.
#[derive(Debug, Default, Deserialize)]
struct Draws {
    jitter: bool,
    #[serde(default)]
    order: Vec<u8>,
    #[serde(default)]
    b: f64,
    #[serde(default)]
    c: f64,
    #[serde(default)]
    s: f64,
    #[serde(default)]
    h: f64,
    gray: bool,
    blur: bool,
    #[serde(default)]
    sigma: f64,
    #[serde(default)]
    solarize: bool,
    flip: bool,
}

/// Our draws, read from the augmenter's log of view `v` (steps in recipe order: jitter,
/// grayscale, blur, [solarize,] flip).
fn our_draws(log: &twoview_pipeline::augment::ViewLog, v: usize) -> Draws {
    use twoview_pipeline::augment::Drawn;
    let mut d = Draws::default();
    let steps: Vec<Drawn> = log.steps.iter().flatten().copied().collect();
    if let Drawn::ColorJitter(p) = steps[0] {
        d.jitter = true;
        d.order = p.order.to_vec();
        d.b = f64::from(p.brightness.unwrap());
        d.c = f64::from(p.contrast.unwrap());
        d.s = f64::from(p.saturation.unwrap());
        d.h = f64::from(p.hue.unwrap());
    }
    d.gray = steps[1] == Drawn::Grayscale;
    if let Drawn::GaussianBlur { sigma } = steps[2] {
        d.blur = true;
        d.sigma = f64::from(sigma);
    }
    if v == 2 {
        d.solarize = matches!(steps[3], Drawn::Solarize { .. });
    }
    d.flip = *steps.last().unwrap() == Drawn::HorizontalFlip;
    d
}

#[test]
fn every_random_draw_matches_the_reference_samplers() {
    use twoview_pipeline::augment::{Augmenter, Recipe};
    let n = 100_000usize;
    let out = support::scratch_dir("draws").join("draws.json");
    let args = ["draws", "--n", "100000", "--out"];
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).chain([out.as_os_str()]).collect();
    let Some(()) = support::venv_python("augment_reference.py", &args) else { return };
    let theirs: BTreeMap<String, Vec<Draws>> =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    // Our augmenter on a tiny source (the draws do not depend on the pixels).
    let recipe = Recipe::mocov3_vit();
    let src =
        RgbImage::try_from_vec((0..8 * 8 * 3).map(|i| (i * 7) as u8).collect(), 8, 8).unwrap();
    let mut aug = Augmenter::new();
    let (mut v1, mut v2) = (RgbImage::new(8, 8), RgbImage::new(8, 8));
    let mut mine: [Vec<Draws>; 2] = [Vec::new(), Vec::new()];
    for i in 0..n as u64 {
        let logs = aug
            .two_views(&recipe, src.view(), (5, 0, i), &mut v1.view_mut(), &mut v2.view_mut())
            .unwrap();
        mine[0].push(our_draws(&logs[0], 1));
        mine[1].push(our_draws(&logs[1], 2));
    }
    let crit_ks = |a: usize, b: usize| 1.949 * ((a + b) as f64 / (a * b) as f64).sqrt();
    for (v, ours) in [(1usize, &mine[0]), (2, &mine[1])] {
        let refs = &theirs[&v.to_string()];
        // Rates: two-proportion z-test, |z| < 3.29 (alpha 0.001).
        let rate = |what: &str, f: &dyn Fn(&Draws) -> bool| {
            let (a, b) =
                (ours.iter().filter(|d| f(d)).count(), refs.iter().filter(|d| f(d)).count());
            let (pa, pb) = (a as f64 / n as f64, b as f64 / refs.len() as f64);
            let p = (a + b) as f64 / (n + refs.len()) as f64;
            let se = (p * (1.0 - p) * (1.0 / n as f64 + 1.0 / refs.len() as f64)).sqrt();
            let z = if se == 0.0 { 0.0 } else { (pa - pb) / se };
            eprintln!("view {v}: {what}: ours {pa:.4}, reference {pb:.4}, z {z:.2}");
            assert!(
                z.abs() < 3.29,
                "view {v}: {what} rate {pa:.4} vs the reference's {pb:.4} (z {z:.2})"
            );
        };
        rate("colour jitter applied", &|d| d.jitter);
        rate("grayscale", &|d| d.gray);
        rate("blur applied", &|d| d.blur);
        rate("flip", &|d| d.flip);
        if v == 2 {
            rate("solarize", &|d| d.solarize);
        }
        // Continuous draws: two-sample KS at alpha 0.001.
        let ks_of = |what: &str, f: &dyn Fn(&Draws) -> Option<f64>| {
            let a: Vec<f64> = ours.iter().filter_map(f).collect();
            let b: Vec<f64> = refs.iter().filter_map(f).collect();
            let (d, crit) = (ks(a.clone(), b.clone()), crit_ks(a.len(), b.len()));
            eprintln!(
                "view {v}: {what}: KS D {d:.4} (critical {crit:.4}, {} and {} draws)",
                a.len(),
                b.len()
            );
            assert!(
                d < crit,
                "view {v}: {what} differs from the reference: KS D {d:.4} ≥ {crit:.4}"
            );
        };
        ks_of("brightness factor", &|d| d.jitter.then_some(d.b));
        ks_of("contrast factor", &|d| d.jitter.then_some(d.c));
        ks_of("saturation factor", &|d| d.jitter.then_some(d.s));
        ks_of("hue shift", &|d| d.jitter.then_some(d.h));
        ks_of("blur sigma", &|d| d.blur.then_some(d.sigma));
        // The order of the four jitter ops: chi-square homogeneity over the 24 permutations,
        // df 23, critical 49.73 at alpha 0.001.
        let mut counts: BTreeMap<Vec<u8>, (f64, f64)> = BTreeMap::new();
        for d in ours.iter().filter(|d| d.jitter) {
            counts.entry(d.order.clone()).or_default().0 += 1.0;
        }
        for d in refs.iter().filter(|d| d.jitter) {
            counts.entry(d.order.clone()).or_default().1 += 1.0;
        }
        assert_eq!(counts.len(), 24, "view {v}: every order of the four ops appears");
        let (na, nb) = counts.values().fold((0.0, 0.0), |(x, y), (a, b)| (x + a, y + b));
        let chi2: f64 = counts
            .values()
            .map(|(a, b)| {
                let t = a + b;
                let (ea, eb) = (t * na / (na + nb), t * nb / (na + nb));
                (a - ea).powi(2) / ea + (b - eb).powi(2) / eb
            })
            .sum();
        eprintln!("view {v}: jitter order: chi2 {chi2:.1} (critical 49.73, df 23)");
        assert!(
            chi2 < 49.73,
            "view {v}: the jitter order differs from torchvision's: chi2 {chi2:.1}"
        );
    }
}

/// The python side's `view_stats`: channel means and stds, mean HSV saturation, grayscale,
/// mean |Laplacian| of the luma.
fn view_stats(v: &RgbImage) -> [f64; 9] {
    let (w, h) = (v.width() as usize, v.height() as usize);
    let d = v.data();
    let n = (w * h) as f64;
    let mut out = [0f64; 9];
    let (mut sat, mut gray) = (0f64, true);
    let mut luma = vec![0f64; w * h];
    for (i, p) in d.chunks(3).enumerate() {
        for c in 0..3 {
            out[c] += f64::from(p[c]) / n;
        }
        let (mx, mn) = (*p.iter().max().unwrap(), *p.iter().min().unwrap());
        if mx > 0 {
            sat += f64::from(mx - mn) / f64::from(mx) / n;
        }
        gray &= p[0] == p[1] && p[1] == p[2];
        luma[i] = 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]);
    }
    for p in d.chunks(3) {
        for c in 0..3 {
            out[3 + c] += (f64::from(p[c]) - out[c]).powi(2) / n;
        }
    }
    for c in 0..3 {
        out[3 + c] = out[3 + c].sqrt();
    }
    let mut lap = 0f64;
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let at = |x: usize, y: usize| luma[y * w + x];
            lap +=
                (4.0 * at(x, y) - at(x, y - 1) - at(x, y + 1) - at(x - 1, y) - at(x + 1, y)).abs();
        }
    }
    out[6] = sat;
    out[7] = f64::from(u8::from(gray));
    out[8] = lap / ((w - 2) * (h - 2)) as f64;
    out
}

#[test]
fn the_two_view_pipeline_matches_moco_v3_on_the_same_sources() {
    use twoview_pipeline::augment::{Augmenter, Recipe};
    let Some(root) = support::imagenette() else { return };
    let images = support::imagenette_sample(&root, 4, 2);
    let recipe = Recipe::mocov3_vit();
    // ImageNet-like sources (short side 256 → 224 views) and CIFAR-like ones (32 → 32).
    for (short, size, n) in [(256u32, 224u32, 3000usize), (32, 32, 6000)] {
        let dir = support::scratch_dir(&format!("views_{short}"));
        let (s, v, ns) = (short.to_string(), size.to_string(), n.to_string());
        let fixed = ["views", "--short", &s, "--size", &v, "--n", &ns, "--out"];
        let mut args: Vec<&OsStr> = fixed.iter().map(OsStr::new).collect();
        args.push(dir.as_os_str());
        args.push(OsStr::new("--images"));
        args.extend(images.iter().map(|p| p.as_os_str()));
        let Some(()) = support::venv_python("augment_reference.py", &args) else { return };
        let theirs: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("stats.json")).unwrap()).unwrap();
        let sources: Vec<RgbImage> = theirs["sources"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let (w, h) = (s["w"].as_u64().unwrap() as u32, s["h"].as_u64().unwrap() as u32);
                read_rgb(&dir, &format!("src-{k}.rgb"), w, h)
            })
            .collect();
        let mut aug = Augmenter::new();
        let (mut v1, mut v2) = (RgbImage::new(size, size), RgbImage::new(size, size));
        let mut mine: [Vec<Vec<f64>>; 2] = [Vec::new(), Vec::new()];
        for i in 0..n {
            let src = &sources[i % sources.len()];
            let key = (9, 0, i as u64);
            let logs = aug
                .two_views(&recipe, src.view(), key, &mut v1.view_mut(), &mut v2.view_mut())
                .unwrap();
            for (k, (v, log)) in [(&v1, &logs[0]), (&v2, &logs[1])].into_iter().enumerate() {
                let c = log.crop;
                let (w, h) = (f64::from(src.width()), f64::from(src.height()));
                let geometry = [
                    f64::from(c.height * c.width) / (w * h),
                    (f64::from(c.width) / f64::from(c.height)).ln(),
                    (f64::from(c.left) + f64::from(c.width) / 2.0) / w,
                ];
                mine[k].push(view_stats(v).into_iter().chain(geometry).collect());
            }
        }
        let names = [
            "mean R",
            "mean G",
            "mean B",
            "std R",
            "std G",
            "std B",
            "saturation",
            "gray",
            "sharpness",
            "crop area",
            "crop log aspect",
            "crop centre x",
        ];
        for (view, ours) in [("1", &mine[0]), ("2", &mine[1])] {
            let refs: Vec<Vec<f64>> =
                serde_json::from_value(theirs["views"][view].clone()).unwrap();
            let crit = 1.949 * (2.0 / n as f64).sqrt();
            for (j, name) in names.iter().enumerate() {
                let a: Vec<f64> = ours.iter().map(|s| s[j]).collect();
                let b: Vec<f64> = refs.iter().map(|s| s[j]).collect();
                if *name == "gray" {
                    let (pa, pb) =
                        (a.iter().sum::<f64>() / n as f64, b.iter().sum::<f64>() / n as f64);
                    let p = (pa + pb) / 2.0;
                    let z = (pa - pb) / (p * (1.0 - p) * 2.0 / n as f64).sqrt();
                    eprintln!(
                        "{short}px → {size}, view {view}: grayscale fraction {pa:.4} vs {pb:.4}, z {z:.2}"
                    );
                    assert!(
                        z.abs() < 3.29,
                        "{short}px view {view}: grayscale fraction {pa:.4} vs {pb:.4}"
                    );
                    continue;
                }
                let d = ks(a, b);
                eprintln!(
                    "{short}px → {size}, view {view}: {name}: KS D {d:.4} (critical {crit:.4})"
                );
                assert!(
                    d < crit,
                    "{short}px → {size}, view {view}: {name} differs: KS D {d:.4} ≥ {crit:.4}"
                );
            }
        }
    }
}
