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
fn branch_free_hue_equals_the_plain_transcription_in_both_builds() {
    let cube = colour_cube();
    for factor in [-0.5f32, -0.1, -0.05, -0.003, 0.0, 0.02, 0.05, 0.1, 0.5] {
        let mut want = cube.clone();
        adjust_hue_reference(&mut want, factor);
        let shift = ((f64::from(factor) * 255.0) as i32) as u8;
        let mut dispatched = cube.clone();
        hue(&mut dispatched, shift); // AVX2 where the CPU has it
        let mut baseline = cube.clone();
        hue_generic(&mut baseline, shift);
        for (name, got) in [("dispatched", &dispatched), ("baseline", &baseline)] {
            if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
                let px = i / 3 * 3;
                panic!(
                    "{name} hue {factor}: pixel {:?} -> {:?}, reference {:?}",
                    &cube[px..px + 3],
                    &got[px..px + 3],
                    &want[px..px + 3]
                );
            }
        }
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
fn reciprocals_give_pil_bytes() {
    for x in 0..=255u32 {
        let x = f64::from(x);
        // hsv2rgb uses floor(h * 6 / 255) and the float remainder; rgb2hsv's s / 255 as float.
        let (exact, fast) = (x * 6.0 / 255.0, x * SIX_255THS);
        assert_eq!(exact.floor(), fast.floor(), "{x}");
        assert_eq!((exact - exact.floor()) as f32, (fast - fast.floor()) as f32, "{x}");
        assert_eq!((x / 255.0) as f32, (x * INV_255) as f32, "{x}");
    }
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
