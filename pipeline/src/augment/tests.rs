use super::*;
use crate::RgbImage;
use crate::rng::Rng;

fn gradient(w: u32, h: u32) -> RgbImage {
    let data = (0..h)
        .flat_map(|y| {
            (0..w).flat_map(move |x| {
                [(x * 255 / w) as u8, (y * 255 / h) as u8, ((x + y) % 256) as u8]
            })
        })
        .collect();
    RgbImage::try_from_vec(data, w, h).unwrap()
}

#[test]
fn crop_boxes_stay_inside_the_image_for_any_shape() {
    let mut rng = Rng::from_seed(9);
    for (w, h) in [(1, 1), (2, 500), (500, 2), (256, 341), (341, 256), (17, 19), (4000, 3000)] {
        for crop in [RandomResizedCrop::with_crop_min(0.08), RandomResizedCrop::with_crop_min(0.9)]
        {
            for _ in 0..300 {
                let b = crop.sample(w, h, &mut rng);
                assert!(b.width >= 1 && b.height >= 1, "{b:?} in {w}x{h}");
                assert!(b.left + b.width <= w && b.top + b.height <= h, "{b:?} in {w}x{h}");
            }
        }
    }
}

#[test]
fn crop_fallback_is_centred_and_ratio_limited() {
    // A 1000x10 strip: no try can fit, so the fallback takes the centred 4:3 box of full height.
    let crop = RandomResizedCrop::with_crop_min(0.5);
    let b = crop.sample(1000, 10, &mut Rng::from_seed(1));
    assert_eq!(b, CropBox { top: 0, left: (1000 - 13) / 2, height: 10, width: 13 });
}

#[test]
fn views_have_the_output_size_and_same_key_gives_same_bytes() {
    let src = gradient(300, 200);
    let recipe = Recipe::mocov3_vit();
    let mut aug = Augmenter::new();
    let run = |aug: &mut Augmenter, sample| {
        let (mut a, mut b) = (RgbImage::new(64, 48), RgbImage::new(64, 48));
        aug.two_views(&recipe, src.view(), (5, 2, sample), &mut a.view_mut(), &mut b.view_mut())
            .unwrap();
        (a, b)
    };
    let first = run(&mut aug, 3);
    assert_eq!(first, run(&mut aug, 3));
    assert_eq!(first, run(&mut Augmenter::new(), 3));
    assert_ne!(first.0, first.1, "the two views of a sample differ");
    assert_ne!(first, run(&mut aug, 4), "samples differ");
}

#[test]
fn same_bytes_whatever_the_thread_count() {
    use rayon::prelude::*;
    let src = gradient(320, 240);
    let recipe = Recipe::mocov3_vit();
    let make = |threads: usize| -> Vec<u8> {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let n = 48;
        let view = 32 * 32 * 3;
        let mut batch = vec![0u8; n * 2 * view];
        pool.install(|| {
            batch.par_chunks_mut(2 * view).enumerate().for_each_init(
                Augmenter::new,
                |aug, (i, slot)| {
                    let (a, b) = slot.split_at_mut(view);
                    let mut a = crate::RgbMut::try_new(a, 32, 32).unwrap();
                    let mut b = crate::RgbMut::try_new(b, 32, 32).unwrap();
                    aug.two_views(&recipe, src.view(), (11, 1, i as u64), &mut a, &mut b).unwrap();
                },
            )
        });
        batch
    };
    let one = make(1);
    assert_eq!(one, make(2));
    assert_eq!(one, make(3));
}

#[test]
fn flip_twice_is_identity_and_grayscale_is_equal_channels() {
    let src = gradient(37, 23);
    let mut img = src.clone();
    hflip(&mut img.view_mut());
    assert_ne!(img, src);
    assert_eq!(&img.data[0..3], &src.data[36 * 3..37 * 3]);
    hflip(&mut img.view_mut());
    assert_eq!(img, src);
    grayscale(&mut img.view_mut());
    assert!(img.data.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]));
}

#[test]
fn blurs_keep_a_flat_image_flat_and_smooth_an_edge() {
    for kind in [BlurMethod::PilBox, BlurMethod::Gaussian] {
        let blur = GaussianBlur { sigma: (2.0, 2.0), method: kind };
        let mut scratch = BlurScratch::default();
        let mut flat = RgbImage::try_from_vec(vec![77; 20 * 10 * 3], 20, 10).unwrap();
        blur.apply(&mut flat.view_mut(), 2.0, &mut scratch);
        assert!(flat.data.iter().all(|&v| v == 77), "{kind:?}");
        // A vertical step edge: after blurring, values near the edge lie strictly between.
        let data =
            (0..10).flat_map(|_| (0..20).flat_map(|x| [if x < 10 { 0 } else { 200 }; 3])).collect();
        let mut edge = RgbImage::try_from_vec(data, 20, 10).unwrap();
        blur.apply(&mut edge.view_mut(), 2.0, &mut scratch);
        let at = |x: usize| edge.data[(5 * 20 + x) * 3];
        assert!(at(9) > 0 && at(9) < 200 && at(10) > 0 && at(10) < 200, "{kind:?}");
        assert!(at(0) < 5 && at(19) > 195, "{kind:?}: far from the edge stays put");
        assert!((0..19).all(|x| at(x) <= at(x + 1)), "{kind:?}: monotone");
    }
}

#[test]
fn presets_validate_and_round_trip_through_toml() {
    for name in Recipe::PRESETS {
        let r = Recipe::preset(name).unwrap();
        r.validate().unwrap();
        let text = r.to_toml();
        assert_eq!(Recipe::from_toml(&text, name).unwrap(), r, "{text}");
    }
    // The asymmetry of the reference shows in the data.
    let r = Recipe::mocov3_vit();
    let p_of = |v: &ViewRecipe, f: fn(&Op) -> bool| v.steps.iter().find(|s| f(&s.op)).map(|s| s.p);
    let blur = |op: &Op| matches!(op, Op::GaussianBlur(_));
    let sol = |op: &Op| matches!(op, Op::Solarize { .. });
    assert_eq!((p_of(&r.view1, blur), p_of(&r.view2, blur)), (Some(1.0), Some(0.1)));
    assert_eq!((p_of(&r.view1, sol), p_of(&r.view2, sol)), (None, Some(0.2)));
}

#[test]
fn bad_recipes_name_the_field() {
    let mut r = Recipe::mocov3_vit();
    r.view2.steps[1].p = 1.5;
    let e = r.validate().unwrap_err().to_string();
    assert!(e.contains("view2.steps[1].p"), "{e}");
    let text = Recipe::mocov3_vit().to_toml().replace("hue = 0.1", "hue = 0.1\ntint = 3");
    let e = Recipe::from_toml(&text, "my.toml").unwrap_err().to_string();
    assert!(e.contains("my.toml") && e.contains("tint"), "{e}");
    let e = Recipe::preset("mocov4").unwrap_err().to_string();
    assert!(e.contains("mocov4") && e.contains("mocov3_vit"), "{e}");
    // Inside an op (found by the TOML fuzz target: the key of a bad value was lost).
    let text = Recipe::mocov3_vit().to_toml().replacen("method = \"pil_box\"", "method = []", 1);
    let e = Recipe::from_toml(&text, "my.toml").unwrap_err().to_string();
    assert!(e.contains("gaussian_blur") && e.contains("`method`"), "{e}");
    let text = Recipe::mocov3_vit().to_toml().replacen("kind = \"solarize\"", "kind = \"sol\"", 1);
    let e = Recipe::from_toml(&text, "my.toml").unwrap_err().to_string();
    assert!(e.contains("`kind` = \"sol\""), "{e}");
    let mut r = Recipe::mocov3_vit();
    if let Op::ColorJitter(j) = &mut r.view1.steps[0].op {
        j.saturation = -0.2;
    }
    let e = r.validate().unwrap_err().to_string();
    assert!(e.contains("view1.steps[0].op.saturation"), "{e}");
}

#[test]
fn random_apply_rates_match_the_recipe() {
    // Over many samples, each step of mocov3_vit fires at its p (5 binomial sds).
    let src = gradient(64, 64);
    let recipe = Recipe::mocov3_vit();
    let mut aug = Augmenter::new();
    let n = 4000;
    let mut fired = [[0usize; MAX_STEPS]; 2];
    let (mut a, mut b) = (RgbImage::new(8, 8), RgbImage::new(8, 8));
    for i in 0..n {
        let logs = aug
            .two_views(&recipe, src.view(), (1, 0, i), &mut a.view_mut(), &mut b.view_mut())
            .unwrap();
        for (v, log) in logs.iter().enumerate() {
            for (s, d) in log.steps.iter().enumerate() {
                if matches!(d, Some(d) if *d != Drawn::Skipped) {
                    fired[v][s] += 1;
                }
            }
        }
    }
    for (v, view) in [&recipe.view1, &recipe.view2].iter().enumerate() {
        for (s, step) in view.steps.iter().enumerate() {
            let expect = n as f64 * step.p;
            let sd = (n as f64 * step.p * (1.0 - step.p)).sqrt().max(0.5);
            assert!(
                (fired[v][s] as f64 - expect).abs() <= 5.0 * sd,
                "view {v} step {s}: {} vs {expect}",
                fired[v][s]
            );
        }
    }
}

#[test]
fn a_view_with_too_many_steps_is_an_error_not_a_truncation() {
    let mut view = Recipe::mocov3_vit().view1;
    view.steps = vec![Step { p: 1.0, op: Op::HorizontalFlip }; MAX_STEPS + 1];
    let src = gradient(16, 16);
    let mut out = RgbImage::new(8, 8);
    let err = Augmenter::new().view(&view, src.view(), &mut Rng::from_seed(0), &mut out.view_mut());
    assert!(err.unwrap_err().to_string().contains("at most"));
}

#[test]
fn every_simd_level_gives_the_baseline_bytes() {
    // Random bytes (every value and channel order occurs) at an odd size, so that vector tails run.
    let mut rng = Rng::from_seed(9);
    let (w, h) = (67, 45);
    let noise =
        RgbImage::try_from_vec((0..w * h * 3).map(|_| rng.below(256) as u8).collect(), w, h)
            .unwrap();
    let mut scratch = BlurScratch::default();
    type Op<'a> = Box<dyn FnMut(&mut RgbImage) + 'a>;
    let mut ops: Vec<(&str, Op<'_>)> = vec![
        ("brightness", Box::new(|i| adjust_brightness(&mut i.view_mut(), 1.37))),
        ("contrast", Box::new(|i| adjust_contrast(&mut i.view_mut(), 0.61))),
        ("saturation", Box::new(|i| adjust_saturation(&mut i.view_mut(), 1.9))),
        ("hue", Box::new(|i| adjust_hue(&mut i.view_mut(), -0.07))),
        ("grayscale", Box::new(|i| grayscale(&mut i.view_mut()))),
        ("hflip", Box::new(|i| hflip(&mut i.view_mut()))),
        ("solarize", Box::new(|i| solarize(&mut i.view_mut(), 128))),
        ("blur", Box::new(move |i| pil_gaussian_blur(&mut i.view_mut(), 1.3, &mut scratch))),
    ];
    let mut levels = Vec::new();
    for (name, op) in &mut ops {
        let mut baseline = None;
        crate::simd::for_each_level(|level| {
            let mut img = noise.clone();
            op(&mut img);
            assert_ne!(img, noise, "{name} changed nothing: the comparison would be empty");
            match &baseline {
                None => baseline = Some(img),
                Some(want) => assert!(img == *want, "{name}: {level:?} differs from the baseline"),
            }
            levels.push(level);
        });
    }
    // Every level up to the one the ops run at was compared (all three on an AVX-512 machine).
    assert_eq!(levels.iter().max(), Some(&crate::simd::level()), "{levels:?}");
    assert_eq!(levels.iter().min(), Some(&crate::simd::Level::Baseline), "{levels:?}");
}

#[test]
fn hostile_recipes_are_refused_naming_the_field_and_ops_refuse_non_finite_factors() {
    let jitter_with = |f: &dyn Fn(&mut ColorJitter)| {
        let mut r = Recipe::mocov3_vit();
        if let Op::ColorJitter(j) = &mut r.view1.steps[0].op {
            f(j);
        }
        r.validate().map_err(|e| e.to_string())
    };
    for (field, bad) in
        [("brightness", f64::INFINITY), ("contrast", 1e300), ("saturation", f64::NAN)]
    {
        let e = jitter_with(&|j| match field {
            "brightness" => j.brightness = bad,
            "contrast" => j.contrast = bad,
            _ => j.saturation = bad,
        })
        .unwrap_err();
        assert!(e.contains(&format!("view1.steps[0].op.{field}")), "{e}");
    }
    let mut r = Recipe::mocov3_vit();
    let blur = r.view1.steps.iter_mut().find(|s| matches!(s.op, Op::GaussianBlur(_))).unwrap();
    blur.op =
        Op::GaussianBlur(GaussianBlur { sigma: (0.1, f64::INFINITY), method: BlurMethod::PilBox });
    let e = r.validate().unwrap_err().to_string();
    assert!(e.contains(".op.sigma"), "{e}");
    // The ops themselves: a non-finite factor is a panic naming it, never undefined behaviour.
    let mut px = vec![10u8; 4 * 4 * 3];
    for f in [f32::NAN, f32::INFINITY] {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            adjust_brightness(&mut RgbMut::try_new(&mut px, 4, 4).unwrap(), f)
        }));
        assert!(r.is_err(), "factor {f}");
    }
}

#[test]
fn crops_are_the_views_first_draws_and_pick_the_dct_scale() {
    let recipe = Recipe::mocov3_vit();
    let src = gradient(600, 450);
    let mut aug = Augmenter::new();
    let (mut a, mut b) = (RgbImage::new(224, 224), RgbImage::new(224, 224));
    for sample in 0..20 {
        let key = (7, 1, sample);
        let logs =
            aug.two_views(&recipe, src.view(), key, &mut a.view_mut(), &mut b.view_mut()).unwrap();
        assert_eq!(crops(&recipe, (600, 450), key), [logs[0].crop, logs[1].crop], "{sample}");
    }
    let c = |width, height| CropBox { top: 0, left: 0, width, height };
    assert_eq!(dct_scale_for(&[c(1792, 1800)], (224, 224)), 1);
    assert_eq!(dct_scale_for(&[c(1791, 1800)], (224, 224)), 2);
    assert_eq!(dct_scale_for(&[c(460, 450)], (224, 224)), 4);
    assert_eq!(dct_scale_for(&[c(460, 447)], (224, 224)), 8);
    assert_eq!(dct_scale_for(&[c(900, 900), c(500, 460)], (224, 224)), 4);
    assert_eq!(dct_scale_for(&[c(900, 900), c(500, 440)], (224, 224)), 8);
    assert_eq!(dct_scale_for(&[c(60, 50)], (24, 24)), 4);
}

#[test]
fn a_view_of_a_scaled_source_is_the_full_view_from_fewer_pixels() {
    // The 2x2 means of a smooth image stand in for a decode at 4/8: each view, cut from the
    // full-size crop mapped onto it, must be close to the same view of the full image (a box
    // left unscaled, or off by a pixel of the half image, is far from it).
    let (w, h) = (640u32, 480u32);
    let smooth = |x: u32, y: u32| {
        let (x, y) = (x as f32 / w as f32, y as f32 / h as f32);
        [(200.0 * x + 20.0) as u8, (180.0 * y + 30.0) as u8, (100.0 * (x + y) + 10.0) as u8]
    };
    let full = RgbImage::try_from_vec(
        (0..h).flat_map(|y| (0..w).flat_map(move |x| smooth(x, y))).collect(),
        w,
        h,
    )
    .unwrap();
    let fd = full.view();
    let fd = fd.data();
    let half: Vec<u8> = (0..h / 2)
        .flat_map(|y| {
            (0..w / 2).flat_map(move |x| {
                (0..3).map(move |c| {
                    let at = |dx: u32, dy: u32| {
                        u32::from(fd[(((2 * y + dy) * w + 2 * x + dx) * 3 + c) as usize])
                    };
                    ((at(0, 0) + at(1, 0) + at(0, 1) + at(1, 1) + 2) / 4) as u8
                })
            })
        })
        .collect();
    let half = RgbImage::try_from_vec(half, w / 2, h / 2).unwrap();
    assert!(Source::scaled(half.view(), (w, h), 2).is_err(), "a 1/2 decode is not a 1/4 one");
    let source = Source::scaled(half.view(), (w, h), 4).unwrap();
    let recipe = Recipe::mocov3_vit();
    let mut aug = Augmenter::new();
    let size = 64;
    let (mut a, mut b) = (RgbImage::new(size, size), RgbImage::new(size, size));
    let (mut c, mut d) = (RgbImage::new(size, size), RgbImage::new(size, size));
    let deferred = Photometric::Deferred;
    for sample in 0..10 {
        let key = (3, 0, sample);
        let want = aug
            .two_views_with(
                &recipe,
                full.view(),
                key,
                &mut a.view_mut(),
                &mut b.view_mut(),
                deferred,
            )
            .unwrap();
        let got = aug
            .two_views_from(&recipe, source, key, &mut c.view_mut(), &mut d.view_mut(), deferred)
            .unwrap();
        assert_eq!(got, want, "the same draws");
        for (x, y) in [(&a, &c), (&b, &d)] {
            let (x, y) = (x.view(), y.view());
            let worst = x.data().iter().zip(y.data()).map(|(p, q)| p.abs_diff(*q)).max().unwrap();
            assert!(worst <= 2, "sample {sample}: {worst} levels apart");
        }
    }
}

#[test]
fn chained_photometric_steps_give_the_bytes_of_one_op_at_a_time() {
    // A busy recipe: every pointwise op in many orders, contrast after other ops (two passes),
    // chains cut by blurs, repeated jitters (more ops than the chain holds at once).
    let jitter =
        Op::ColorJitter(ColorJitter { brightness: 0.6, contrast: 0.6, saturation: 0.5, hue: 0.2 });
    let blur = Op::GaussianBlur(GaussianBlur { sigma: (0.1, 2.0), method: BlurMethod::PilBox });
    let steps = [
        (0.9, jitter),
        (0.5, Op::Grayscale),
        (0.5, Op::Solarize { threshold: 128 }),
        (0.3, blur),
        (0.7, jitter),
        (0.6, jitter),
        (0.3, Op::Solarize { threshold: 40 }),
        (0.5, Op::HorizontalFlip),
    ];
    let recipe = ViewRecipe {
        crop: RandomResizedCrop::with_crop_min(0.08),
        steps: steps.into_iter().map(|(p, op)| Step { p, op }).collect(),
    };
    let mut rng = Rng::from_seed(3);
    let noise: Vec<u8> = (0..97 * 83 * 3).map(|_| (rng.next_u64() >> 56) as u8).collect();
    let src = RgbImage::try_from_vec(noise, 97, 83).unwrap();
    let mut aug = Augmenter::new();
    let mut differs = 0;
    crate::simd::for_each_level(|level| {
        // 43 x 37: pixel counts that leave a partial last block.
        for sample in 0..300 {
            let key = StreamKey { seed: 1, epoch: 0, sample, view: 0 };
            let mut got = RgbImage::new(43, 37);
            let log = aug
                .view(&recipe, src.view(), &mut Rng::for_stream(key), &mut got.view_mut())
                .unwrap();
            let mut want = RgbImage::new(43, 37);
            let again = aug
                .view_with(
                    &recipe,
                    src.view(),
                    &mut Rng::for_stream(key),
                    &mut want.view_mut(),
                    Photometric::Deferred,
                )
                .unwrap();
            assert_eq!(log, again);
            differs += usize::from(want != got);
            aug.photometric_one_by_one(&log.steps, &recipe, &mut want.view_mut());
            assert!(got == want, "{level:?} sample {sample}: {:?}", log.steps);
        }
    });
    assert!(differs > 250, "the photometric steps ran ({differs} changed views)");
}
