//! The photometric steps on the trainer's device (`twoview_model::photometric`, run here on the
//! CPU device) against the pipeline's PIL-exact CPU ops on the same drawn parameters: the
//! loader's deferred path (crop + flip on the worker, the rest from the shipped numbers) must
//! give the CPU path's bytes, op by op and for whole recipes.

use tch::Tensor;
use twoview_pipeline::augment::{
    Augmenter, BlurMethod, ColorJitter, GaussianBlur, Op, Photometric, RandomResizedCrop, Recipe,
    Step, ViewRecipe, device,
};
use twoview_pipeline::{RgbMut, RgbRef};

use crate::support;

/// Real photos (one per class, whole) as (pixels, width, height).
fn photos(n: usize) -> Vec<(Vec<u8>, u32, u32)> {
    let Some(root) = support::imagenette() else { return Vec::new() };
    support::imagenette_sample(&root, n, 1)
        .iter()
        .map(|p| {
            let img = image::open(p).unwrap().into_rgb8();
            let (w, h) = img.dimensions();
            (img.into_raw(), w, h)
        })
        .collect()
}

/// A recipe whose two views crop and then run `steps` (each with probability `p`).
fn recipe(steps: Vec<Step>) -> Recipe {
    let view = ViewRecipe { crop: RandomResizedCrop::with_crop_min(0.3), steps };
    Recipe { name: "test".into(), source: "test".into(), view1: view.clone(), view2: view }
}

/// For `samples` draws per photo, the CPU views and the device views; returns (bytes compared,
/// bytes differing, the worst difference) and panics with a sample on any difference.
fn compare(recipe: &Recipe, size: u32, samples: u64, what: &str) {
    let photos = photos(10);
    if photos.is_empty() {
        return;
    }
    let view = (size * size * 3) as usize;
    let mut aug = Augmenter::new();
    let (mut cpu, mut geo, mut params) = (Vec::new(), Vec::new(), Vec::new());
    for (p, (px, w, h)) in photos.iter().enumerate() {
        let src = RgbRef::try_new(px, *w, *h).unwrap();
        for k in 0..samples {
            let key = (5, p as u64, k);
            for mode in [Photometric::Here, Photometric::Deferred] {
                let mut a = vec![0u8; view];
                let mut b = vec![0u8; view];
                let logs = aug
                    .two_views_with(
                        recipe,
                        src,
                        key,
                        &mut RgbMut::try_new(&mut a, size, size).unwrap(),
                        &mut RgbMut::try_new(&mut b, size, size).unwrap(),
                        mode,
                    )
                    .unwrap();
                let out = if mode == Photometric::Here { &mut cpu } else { &mut geo };
                out.extend_from_slice(&a);
                out.extend_from_slice(&b);
                if mode == Photometric::Deferred {
                    let mut s = vec![0f32; device::SAMPLE_FLOATS];
                    device::encode(&logs, &mut s);
                    params.extend_from_slice(&s);
                }
            }
        }
    }
    assert_eq!(device::SAMPLE_FLOATS, twoview_model::photometric::SAMPLE_FLOATS);
    let n = photos.len() as i64 * samples as i64;
    let shape = [n, 2, size as i64, size as i64, 3];
    let views = Tensor::from_slice(&geo).reshape(shape);
    let got = twoview_model::photometric::apply(&views, &params).unwrap();
    let got = Vec::<u8>::try_from(got.flatten(0, -1)).unwrap();
    assert_eq!(got.len(), cpu.len());
    let diff: Vec<usize> = (0..cpu.len()).filter(|&i| got[i] != cpu[i]).collect();
    if let Some(&i) = diff.first() {
        let worst = diff.iter().map(|&i| (got[i] as i32 - cpu[i] as i32).abs()).max().unwrap();
        let sample = i / (2 * view);
        let v = (i / view) % 2;
        let s = &params[sample * device::SAMPLE_FLOATS + v * device::VIEW_FLOATS..]
            [..device::VIEW_FLOATS];
        panic!(
            "{what}: {} of {} bytes differ (worst by {worst}); first at sample {sample} view {v}, \
             byte {}: device {} vs CPU {}; that view's parameters {s:?}",
            diff.len(),
            cpu.len(),
            i % view,
            got[i],
            cpu[i]
        );
    }
}

fn jitter(brightness: f64, contrast: f64, saturation: f64, hue: f64) -> Op {
    Op::ColorJitter(ColorJitter { brightness, contrast, saturation, hue })
}

fn pil_blur(lo: f64, hi: f64) -> Op {
    Op::GaussianBlur(GaussianBlur { sigma: (lo, hi), method: BlurMethod::PilBox })
}

#[test]
fn each_device_op_gives_the_cpu_bytes() {
    let always = |op| vec![Step { p: 1.0, op }];
    for (what, steps) in [
        ("brightness", always(jitter(0.8, 0.0, 0.0, 0.0))),
        ("contrast", always(jitter(0.0, 0.8, 0.0, 0.0))),
        ("saturation", always(jitter(0.0, 0.0, 0.8, 0.0))),
        ("hue", always(jitter(0.0, 0.0, 0.0, 0.5))),
        ("grayscale", always(Op::Grayscale)),
        ("blur sigma 0.1-2", always(pil_blur(0.1, 2.0))),
        ("blur sigma 2-12 (radius > 3)", always(pil_blur(2.0, 12.0))),
        ("solarize", always(Op::Solarize { threshold: 128 })),
        ("solarize 7", always(Op::Solarize { threshold: 7 })),
    ] {
        compare(&recipe(steps), 48, 3, what);
    }
}

#[test]
fn whole_recipes_on_the_device_give_the_cpu_bytes() {
    for name in Recipe::PRESETS {
        compare(&Recipe::preset(name).unwrap(), 64, 6, name);
    }
    // Every op at once, half the time each, jitter strong: orders, skips and mixes per sample.
    let half = |op| Step { p: 0.5, op };
    let all = vec![
        half(jitter(0.9, 0.9, 0.9, 0.5)),
        half(Op::Grayscale),
        half(pil_blur(0.1, 5.0)),
        half(Op::Solarize { threshold: 100 }),
        half(Op::HorizontalFlip),
        half(jitter(0.4, 0.0, 0.4, 0.0)),
    ];
    compare(&recipe(all), 56, 8, "every op, p = 0.5");
}

#[test]
fn full_size_mocov3_views_match() {
    compare(&Recipe::mocov3_vit(), 224, 2, "mocov3_vit at 224");
}

#[test]
fn a_true_gaussian_blur_cannot_be_deferred() {
    let r = recipe(vec![Step {
        p: 1.0,
        op: Op::GaussianBlur(GaussianBlur { sigma: (0.1, 2.0), method: BlurMethod::Gaussian }),
    }]);
    let e = device::check(&r).unwrap_err().to_string();
    assert!(e.contains("view1.steps[0]") && e.contains("augment_on"), "{e}");
}
