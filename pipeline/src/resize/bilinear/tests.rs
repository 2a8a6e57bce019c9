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
