use super::*;

/// Every 3rd level of each channel (~620k colours), as one image.
fn colour_cube() -> Vec<u8> {
    let levels: Vec<u8> = (0..=255).step_by(3).chain([254, 255]).collect();
    let mut out = Vec::new();
    for &r in &levels {
        for &g in &levels {
            for &b in &levels {
                out.extend([r, g, b]);
            }
        }
    }
    out
}

#[test]
fn branch_free_hue_equals_the_plain_transcription_at_every_simd_level() {
    let cube = colour_cube();
    for factor in [-0.5f32, -0.1, -0.05, -0.003, 0.0, 0.02, 0.05, 0.1, 0.5] {
        let mut want = cube.clone();
        adjust_hue_reference(&mut want, factor);
        let shift = ((f64::from(factor) * 255.0) as i32) as u8;
        simd::for_each_level(|level| {
            let mut got = cube.clone();
            hue(&mut got, shift);
            if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
                let px = i / 3 * 3;
                panic!(
                    "{level:?} hue {factor}: pixel {:?} -> {:?}, reference {:?}",
                    &cube[px..px + 3],
                    &got[px..px + 3],
                    &want[px..px + 3]
                );
            }
        });
    }
}

#[test]
fn blends_clamp_and_truncate_like_pil() {
    assert_eq!(blend(0.0, 200.0, 1.5), 255);
    assert_eq!(blend(100.0, 0.0, 1.5), 0);
    assert_eq!(blend(0.0, 3.0, 0.9), 2); // 2.7 truncates
    assert_eq!(blend(10.0, 20.0, 0.0), 10);
    let mut px = [10u8, 200, 30];
    saturation(&mut px, 0.0);
    let l = luma(10, 200, 30);
    assert_eq!(px, [l, l, l]);
}

#[test]
fn per_byte_steps_in_f32_give_pil_bytes() {
    for x in 0..=255i32 {
        // PIL's hsv2rgb: i = floor(h * 6.0 / 255.0), f = (float)(that - i), in double.
        let hf = f64::from(x) * 6.0 / 255.0;
        let (i, f) = hue_sector(x);
        assert_eq!(f64::from(i), hf.floor(), "sector of {x}");
        assert_eq!(f, (hf - hf.floor()) as f32, "remainder of {x}");
        // rgb2hsv / hsv2rgb: s / 255.0 in double, stored as float.
        assert_eq!(unit_byte(x), (f64::from(x) / 255.0) as f32, "{x} / 255");
    }
    // The test can fail: multiplying by 1/255 instead of dividing is off for some bytes.
    assert!((0..=255).any(|x| x as f32 * (1.0 / 255.0) != (f64::from(x) / 255.0) as f32));
}

#[test]
fn hue_round_trip_of_every_colour_equals_pil() {
    // Shift 0 and 0.5 over all 16.7M colours: covers h / 6 for every reachable h.
    let all: Vec<u8> =
        (0..1u32 << 24).flat_map(|c| [(c >> 16) as u8, (c >> 8) as u8, c as u8]).collect();
    for factor in [0.0f32, 0.5] {
        let mut want = all.clone();
        adjust_hue_reference(&mut want, factor);
        let mut got = all.clone();
        hue(&mut got, ((f64::from(factor) * 255.0) as i32) as u8);
        let bad = (0..all.len() / 3).find(|&p| got[3 * p..3 * p + 3] != want[3 * p..3 * p + 3]);
        assert!(bad.is_none(), "factor {factor}: colour {:?}", bad.map(|p| &all[3 * p..3 * p + 3]));
    }
}

#[test]
fn each_half_of_the_hue_round_trip_equals_pil_on_every_input() {
    // rgb2hsv on every colour.
    for c in 0..1u32 << 24 {
        let (r, g, b) = ((c >> 16) as u8, (c >> 8) as u8, c as u8);
        let (h, s, v) = rgb_lanes_to_hsv(f32::from(r), f32::from(g), f32::from(b));
        let h = hue_byte(h);
        let want = rgb_to_hsv(r, g, b);
        assert_eq!(
            (h, s, v),
            (i32::from(want.0), i32::from(want.1), f32::from(want.2)),
            "{r} {g} {b}"
        );
    }
    // hsv2rgb on every (h, s, v): any hue shift reaches any h, so this covers all shifts.
    for c in 0..1u32 << 24 {
        let (h, s, v) = ((c >> 16) as u8, (c >> 8) as u8, c as u8);
        let (r, g, b) = hsv_lanes_to_rgb(i32::from(h), i32::from(s), f32::from(v));
        let want = hsv_to_rgb(h, s, v);
        assert_eq!(
            (r, g, b),
            (f32::from(want.0), f32::from(want.1), f32::from(want.2)),
            "{h} {s} {v}"
        );
    }
}

/// `op` alone, through its public function.
fn one_op(op: ColorOp, img: &mut RgbMut<'_>) {
    match op {
        ColorOp::Brightness(f) => adjust_brightness(img, f),
        ColorOp::Contrast(f) => adjust_contrast(img, f),
        ColorOp::Saturation(f) => adjust_saturation(img, f),
        ColorOp::Hue(shift) => hue(img.data(), shift),
        ColorOp::Grayscale => grayscale(img),
        ColorOp::Solarize(t) => crate::augment::solarize(img, t),
    }
}

#[test]
fn a_chain_gives_the_bytes_of_its_ops_one_by_one_at_every_simd_level() {
    let mut rng = Rng::from_seed(17);
    // 31 x 33 pixels: 15 whole blocks and a partial one.
    let (w, h) = (31, 33);
    let noise: Vec<u8> = (0..w * h * 3).map(|_| (rng.next_u64() >> 56) as u8).collect();
    let mut contrast_late = 0;
    simd::for_each_level(|level| {
        for trial in 0..400 {
            let len = 1 + (rng.next_u64() % 12) as usize;
            let ops: Vec<ColorOp> = (0..len)
                .map(|_| {
                    let f = rng.uniform(0.0, 2.5) as f32;
                    match rng.next_u64() % 6 {
                        0 => ColorOp::Brightness(f),
                        1 => ColorOp::Contrast(f),
                        2 => ColorOp::Saturation(f),
                        3 => ColorOp::Hue((rng.next_u64() >> 56) as u8),
                        4 => ColorOp::Grayscale,
                        _ => ColorOp::Solarize((rng.next_u64() >> 56) as u8),
                    }
                })
                .collect();
            contrast_late +=
                usize::from(ops[1..].iter().any(|o| matches!(o, ColorOp::Contrast(_))));
            let mut want = noise.clone();
            let mut got = noise.clone();
            let mut chain = ColorChain::new();
            {
                let mut img = RgbMut::try_new(&mut got, w as u32, h as u32).unwrap();
                for &op in &ops {
                    chain.push(op, &mut img);
                }
                chain.run(&mut img);
            }
            let mut img = RgbMut::try_new(&mut want, w as u32, h as u32).unwrap();
            for &op in &ops {
                one_op(op, &mut img);
            }
            assert!(got == want, "{level:?} trial {trial}: {ops:?}");
        }
    });
    assert!(contrast_late > 100, "contrast after other ops: {contrast_late} chains");
}
