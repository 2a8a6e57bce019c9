use super::*;
use crate::rng::Rng;

/// Pillow's two loops as written in Resample.c (8bpc, 3 bands), on the same coefficients.
fn pillow_loops(
    src: &[u8],
    stride: usize,
    (w, h): (usize, usize),
    (ow, oh): (usize, usize),
) -> Vec<u8> {
    let vertical = Axis::bilinear(h, oh);
    let (first, rows) = vertical.span();
    let mut tmp = vec![0u8; ow * 3 * rows];
    let horizontal = Axis::bilinear(w, ow);
    for y in 0..rows {
        for xx in 0..ow {
            let (x0, k) = horizontal.taps(xx);
            for c in 0..3 {
                let mut ss = HALF;
                for (x, &kx) in k.iter().enumerate() {
                    ss += i32::from(src[(y + first) * stride + (x + x0) * 3 + c]) * kx;
                }
                tmp[(y * ow + xx) * 3 + c] = clip(ss);
            }
        }
    }
    let mut out = vec![0u8; ow * oh * 3];
    for yy in 0..oh {
        let (y0, k) = vertical.taps(yy);
        for i in 0..ow * 3 {
            let mut ss = HALF;
            for (y, &ky) in k.iter().enumerate() {
                ss += i32::from(tmp[(y + y0 - first) * ow * 3 + i]) * ky;
            }
            out[yy * ow * 3 + i] = clip(ss);
        }
    }
    out
}

/// The image of `w`-pixel RGB rows mirrored left-right, pixel by pixel.
fn mirror(img: &[u8], w: usize) -> Vec<u8> {
    let mut out = img.to_vec();
    for (o, i) in out.chunks_exact_mut(w * 3).zip(img.chunks_exact(w * 3)) {
        for x in 0..w {
            o[x * 3..x * 3 + 3].copy_from_slice(&i[(w - 1 - x) * 3..][..3]);
        }
    }
    out
}

fn noise(len: usize, rng: &mut Rng) -> Vec<u8> {
    (0..len).map(|_| rng.below(256) as u8).collect()
}

#[test]
fn coefficients_sum_to_one_and_cover_the_input() {
    for (n, m) in [(1, 1), (1, 224), (97, 224), (224, 224), (341, 224), (1000, 224), (224, 7)] {
        let axis = Axis::bilinear(n, m);
        for i in 0..m {
            let (x0, k) = axis.taps(i);
            assert!(x0 + k.len() <= n, "{n}->{m} at {i}");
            let sum: i64 = k.iter().map(|&v| i64::from(v)).sum();
            // Each tap rounds to nearest: the sum is within half a unit per tap of 2^22.
            assert!((sum - (1 << 22)).abs() <= k.len() as i64, "{n}->{m} at {i}: {sum}");
        }
        assert_eq!(axis.span().0, 0);
    }
    // Same size: the identity taps (Pillow would skip the pass; the taps must agree).
    let id = Axis::bilinear(5, 5);
    assert_eq!(id.taps(2), (2, &[1 << 22, 0][..]));
    assert_eq!(id.taps(4), (4, &[1 << 22][..]));
}

#[test]
fn matches_pillows_loops_at_every_simd_level() {
    let mut rng = Rng::from_seed(7);
    let sizes = [
        ((341, 256), (224, 224)),
        ((97, 61), (224, 224)),
        ((200, 224), (224, 224)),
        ((224, 180), (224, 224)),
        ((1, 1), (224, 224)),
        ((341, 1), (3, 5)),
        ((640, 480), (100, 75)),
        ((33, 33), (32, 33)),
        ((40, 30), (40, 30)),
        ((5, 300), (224, 224)),
    ];
    for ((w, h), (ow, oh)) in sizes {
        // Rows padded (a crop of a wider image), and the crop flush with the buffer's end so the
        // last 4-byte read would run past it.
        let stride = w * 3 + 6;
        let src = noise((h - 1) * stride + w * 3, &mut rng);
        let want = pillow_loops(&src, stride, (w, h), (ow, oh));
        let mirrored = mirror(&want, ow);
        simd::for_each_level(|level| {
            let mut got = vec![0u8; ow * oh * 3];
            Bilinear::default().resize(&src, stride, (w, h), (ow, oh), &mut got, false);
            assert!(got == want, "{w}x{h} -> {ow}x{oh} at {level:?}");
            // Mirrored in the horizontal pass, also where the width is unchanged (40x30).
            Bilinear::default().resize(&src, stride, (w, h), (ow, oh), &mut got, true);
            assert!(got == mirrored, "{w}x{h} -> {ow}x{oh} mirrored at {level:?}");
        });
    }
}

#[test]
fn a_reused_resampler_gives_the_same_bytes() {
    let mut rng = Rng::from_seed(11);
    let mut resampler = Bilinear::default();
    for _ in 0..40 {
        let (w, h) = (1 + rng.below(300) as usize, 1 + rng.below(300) as usize);
        let (ow, oh) = (1 + rng.below(240) as usize, 1 + rng.below(240) as usize);
        let src = noise(w * h * 3, &mut rng);
        let mut got = vec![0u8; ow * oh * 3];
        let flip = rng.below(2) == 1;
        resampler.resize(&src, w * 3, (w, h), (ow, oh), &mut got, flip);
        let want = pillow_loops(&src, w * 3, (w, h), (ow, oh));
        let want = if flip { mirror(&want, ow) } else { want };
        assert!(got == want, "{w}x{h} -> {ow}x{oh}, mirrored {flip}");
    }
}

#[test]
fn a_whole_pixel_box_resizes_as_the_crop_does_at_every_simd_level() {
    let mut rng = Rng::from_seed(13);
    let (w, h) = (120, 90);
    let src = noise(w * h * 3, &mut rng);
    // (left, top, width, height) of the box, and the output size: shrink, grow, one pixel.
    for ((x, y, cw, ch), (ow, oh)) in [
        ((0, 0, 120, 90), (50, 40)),
        ((7, 11, 60, 33), (224, 224)),
        ((100, 3, 20, 87), (9, 30)),
        ((119, 89, 1, 1), (4, 4)),
    ] {
        let crop = &src[(y * w + x) * 3..];
        let want = pillow_loops(crop, w * 3, (cw, ch), (ow, oh));
        let mirrored = mirror(&want, ow);
        let bx = [x as f32, y as f32, (x + cw) as f32, (y + ch) as f32];
        simd::for_each_level(|level| {
            let mut got = vec![0u8; ow * oh * 3];
            Bilinear::default().resize_box(&src, w * 3, (w, h), bx, (ow, oh), &mut got, false);
            assert!(got == want, "box {bx:?} -> {ow}x{oh} at {level:?}");
            Bilinear::default().resize_box(&src, w * 3, (w, h), bx, (ow, oh), &mut got, true);
            assert!(got == mirrored, "box {bx:?} -> {ow}x{oh} mirrored at {level:?}");
        });
    }
}

#[test]
fn a_fractional_box_samples_the_image_where_it_lies() {
    // A horizontal ramp (pixel x holds 2x, at its centre x + 0.5: the ramp is 2p - 1 at p): a
    // box from 10.5 to 30.5 into 20 columns puts output column i's centre at 11 + i, where the
    // ramp reads 21 + 2i (a box truncated to whole pixels reads 1 lower).
    let (w, h) = (64, 8);
    let src: Vec<u8> = (0..h).flat_map(|_| (0..w).flat_map(|x| [2 * x as u8; 3])).collect();
    let mut got = vec![0u8; 20 * 4 * 3];
    Bilinear::default().resize_box(
        &src,
        w * 3,
        (w, h),
        [10.5, 0.0, 30.5, 8.0],
        (20, 4),
        &mut got,
        false,
    );
    for (i, px) in got.chunks_exact(3).take(20).enumerate() {
        let want = 21.0 + 2.0 * i as f64;
        assert!((f64::from(px[0]) - want).abs() <= 0.5, "column {i}: {} want {want}", px[0]);
    }
}
