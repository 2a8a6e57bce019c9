use super::*;
use crate::RgbImage;
use crate::rng::Rng;

/// BoxBlur.c's definition written out per output byte, edges replicated by clamping.
fn naive_pil_blur(img: &RgbImage, sigma: f32) -> RgbImage {
    let (r, ww, fw) = box_weights(box_radius(sigma, 3));
    let (w, h) = (img.width as isize, img.height as isize);
    let mut cur = img.data.clone();
    let pass = |src: &[u8], horizontal: bool| -> Vec<u8> {
        let mut out = src.to_vec();
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let at = |d: isize| {
                        let (xx, yy) = if horizontal {
                            ((x + d).clamp(0, w - 1), y)
                        } else {
                            (x, (y + d).clamp(0, h - 1))
                        };
                        u32::from(src[((yy * w + xx) * 3) as usize + c])
                    };
                    let r = r as isize;
                    let inner: u32 = (-r..=r).map(at).sum();
                    let bulk = inner * ww + (at(-r - 1) + at(r + 1)) * fw;
                    out[((y * w + x) * 3) as usize + c] = ((bulk + (1 << 23)) >> 24) as u8;
                }
            }
        }
        out
    };
    for horizontal in [true, true, true, false, false, false] {
        cur = pass(&cur, horizontal);
    }
    RgbImage::try_from_vec(cur, img.width, img.height).unwrap()
}

#[test]
fn fast_box_blur_equals_the_definition_on_odd_sizes() {
    let mut rng = Rng::from_seed(5);
    let mut scratch = BlurScratch::default();
    let mut radii = std::collections::BTreeSet::new();
    for (w, h) in [(1, 1), (2, 7), (7, 2), (13, 9), (40, 3), (31, 33)] {
        let data = (0..w * h * 3).map(|_| rng.below(256) as u8).collect();
        let img = RgbImage::try_from_vec(data, w, h).unwrap();
        // Box radii 0, 0, 1, 1, 2, 3 (direct row passes), 4 and 11 (transposed column passes).
        for sigma in [0.1f32, 0.7, 1.3, 2.0, 3.0, 4.0, 5.0, 12.0] {
            let mut fast = img.clone();
            pil_gaussian_blur(&mut fast.view_mut(), sigma, &mut scratch);
            let r = box_weights(box_radius(sigma, 3)).0;
            assert_eq!(fast, naive_pil_blur(&img, sigma), "{w}x{h} sigma {sigma} (radius {r})");
            radii.insert(r);
        }
    }
    // Both paths ran, and every radius of the direct one.
    assert!((0..=DIRECT_MAX_RADIUS).all(|r| radii.contains(&r)), "{radii:?}");
    assert!(radii.iter().any(|&r| r > DIRECT_MAX_RADIUS), "{radii:?}");
}
