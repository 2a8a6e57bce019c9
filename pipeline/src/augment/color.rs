//! Colour ops with PIL's arithmetic, as torchvision applies them to PIL images (the reference
//! loader's path): `ImageEnhance` blends for brightness, contrast and saturation, HSV through
//! PIL's converters for hue, and ITU-R 601-2 luma for grayscale.

use serde::{Deserialize, Serialize};

use crate::RgbMut;
use crate::rng::Rng;

/// PIL's `convert("L")`: ITU-R 601-2 luma in 16-bit fixed point, rounded.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

/// PIL's `ImagingBlend` for one byte: `in1 + alpha * (in2 - in1)` in f32, clamped, truncated.
#[inline]
fn blend(in1: u8, in2: u8, alpha: f32) -> u8 {
    let t = f32::from(in1) + alpha * (i32::from(in2) - i32::from(in1)) as f32;
    if t <= 0.0 {
        0
    } else if t >= 255.0 {
        255
    } else {
        t as u8
    }
}

/// torchvision `adjust_brightness` on PIL: blend with black.
pub fn adjust_brightness(img: &mut RgbMut<'_>, factor: f32) {
    for v in img.data() {
        *v = blend(0, *v, factor);
    }
}

/// torchvision `adjust_contrast` on PIL: blend with the mean luma, rounded to an integer.
pub fn adjust_contrast(img: &mut RgbMut<'_>, factor: f32) {
    let data = img.data();
    let sum: u64 = data.chunks_exact(3).map(|p| u64::from(luma(p[0], p[1], p[2]))).sum();
    let n = (data.len() / 3) as f64;
    let mean = (sum as f64 / n + 0.5) as u8;
    for v in data {
        *v = blend(mean, *v, factor);
    }
}

/// torchvision `adjust_saturation` on PIL (`ImageEnhance.Color`): blend with the pixel's luma.
pub fn adjust_saturation(img: &mut RgbMut<'_>, factor: f32) {
    for p in img.data().chunks_exact_mut(3) {
        let l = luma(p[0], p[1], p[2]);
        for v in p {
            *v = blend(l, *v, factor);
        }
    }
}

/// PIL's `rgb2hsv` for one pixel (Convert.c, after colorsys), H, S, V in 0..=255.
#[inline]
fn rgb_to_hsv(r: u8, g: u8, b: u8) -> (u8, u8, u8) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    if maxc == minc {
        return (0, 0, maxc);
    }
    let cr = f32::from(maxc - minc);
    let s = cr / f32::from(maxc);
    let rc = f32::from(maxc - r) / cr;
    let gc = f32::from(maxc - g) / cr;
    let bc = f32::from(maxc - b) / cr;
    // C promotes `2.0 + rc - bc` to double (2.0 is a double literal), then stores a float.
    let h = if r == maxc {
        bc - gc
    } else if g == maxc {
        (2.0 + f64::from(rc) - f64::from(bc)) as f32
    } else {
        (4.0 + f64::from(gc) - f64::from(rc)) as f32
    };
    // C: h = fmod((h / 6.0 + 1.0), 1.0) in double, stored as float.
    let h = ((f64::from(h) / 6.0 + 1.0) % 1.0) as f32;
    let clip8 = |x: f64| (x as i32).clamp(0, 255) as u8;
    (clip8(f64::from(h) * 255.0), clip8(f64::from(s) * 255.0), maxc)
}

/// PIL's `hsv2rgb` for one pixel.
#[inline]
fn hsv_to_rgb(h: u8, s: u8, v: u8) -> (u8, u8, u8) {
    if s == 0 {
        return (v, v, v);
    }
    let hf = f64::from(h) * 6.0 / 255.0;
    let i = hf.floor() as i32;
    let f = (hf - f64::from(i)) as f32;
    let fs = (f64::from(s) / 255.0) as f32;
    let vf = f64::from(v);
    let clip = |x: f64| (x.round() as i32).clamp(0, 255) as u8;
    let p = clip(vf * (1.0 - f64::from(fs)));
    let q = clip(vf * (1.0 - f64::from(fs * f)));
    // `fs * f` is a float product; `fs * (1.0 - f)` a double one (1.0 is a double literal).
    let t = clip(vf * (1.0 - f64::from(fs) * (1.0 - f64::from(f))));
    match i % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// torchvision `adjust_hue` on PIL: to HSV, add `int32(factor * 255)` to H as a wrapping u8,
/// back to RGB. `factor` in [-0.5, 0.5].
pub fn adjust_hue(img: &mut RgbMut<'_>, factor: f32) {
    let shift = ((f64::from(factor) * 255.0) as i32) as u8;
    for p in img.data().chunks_exact_mut(3) {
        let (h, s, v) = rgb_to_hsv(p[0], p[1], p[2]);
        let (r, g, b) = hsv_to_rgb(h.wrapping_add(shift), s, v);
        p.copy_from_slice(&[r, g, b]);
    }
}

/// torchvision `rgb_to_grayscale(num_output_channels=3)` on PIL: luma in all three channels.
pub fn grayscale(img: &mut RgbMut<'_>) {
    for p in img.data().chunks_exact_mut(3) {
        let l = luma(p[0], p[1], p[2]);
        p.copy_from_slice(&[l, l, l]);
    }
}

/// torchvision `ColorJitter`: strengths as torchvision takes them; a zero strength leaves that
/// adjustment out. Brightness, contrast and saturation factors are drawn from
/// U(max(0, 1 - s), 1 + s), hue from U(-h, h), and the four run in a random order per call.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColorJitter {
    /// Brightness strength.
    pub brightness: f64,
    /// Contrast strength.
    pub contrast: f64,
    /// Saturation strength.
    pub saturation: f64,
    /// Hue strength, at most 0.5.
    pub hue: f64,
}

/// The factors one `ColorJitter` call drew, in the order they were applied.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct JitterParams {
    /// Order of application: 0 brightness, 1 contrast, 2 saturation, 3 hue.
    pub order: [u8; 4],
    /// Brightness factor, if that adjustment is on.
    pub brightness: Option<f32>,
    /// Contrast factor.
    pub contrast: Option<f32>,
    /// Saturation factor.
    pub saturation: Option<f32>,
    /// Hue shift in [-0.5, 0.5].
    pub hue: Option<f32>,
}

impl ColorJitter {
    /// Draws the order and factors (torchvision `ColorJitter.get_params`).
    pub fn sample(&self, rng: &mut Rng) -> JitterParams {
        let order = rng.permutation::<4>();
        let mut factor =
            |s: f64| (s > 0.0).then(|| rng.uniform((1.0 - s).max(0.0), 1.0 + s) as f32);
        let brightness = factor(self.brightness);
        let contrast = factor(self.contrast);
        let saturation = factor(self.saturation);
        let hue = (self.hue > 0.0).then(|| rng.uniform(-self.hue, self.hue) as f32);
        JitterParams { order, brightness, contrast, saturation, hue }
    }
}

impl JitterParams {
    /// Applies the drawn adjustments in their order.
    pub fn apply(&self, img: &mut RgbMut<'_>) {
        for op in self.order {
            match op {
                0 => self.brightness.inspect(|&f| adjust_brightness(img, f)),
                1 => self.contrast.inspect(|&f| adjust_contrast(img, f)),
                2 => self.saturation.inspect(|&f| adjust_saturation(img, f)),
                _ => self.hue.inspect(|&f| adjust_hue(img, f)),
            };
        }
    }
}
