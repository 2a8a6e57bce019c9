//! Line charts as RGB images (for training curves): a grid of panels, each with a title, a
//! frame, min/max labels on both axes, one or more series and optional point markers. Text is
//! the public-domain 8×8 bitmap font of the `font8x8` crate, so no font files are needed.

use font8x8::{BASIC_FONTS, UnicodeFonts};

use crate::RgbImage;

/// One curve: (x, y) points in order; non-finite points break the line.
#[derive(Debug, Clone)]
pub struct Series {
    /// Shown in the panel's legend.
    pub label: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
    /// Line colour.
    pub color: [u8; 3],
}

/// One panel of the grid.
#[derive(Debug, Clone, Default)]
pub struct Panel {
    /// Title above the frame.
    pub title: String,
    /// Curves, drawn in order.
    pub series: Vec<Series>,
    /// Points to mark with a filled square (e.g. gradient spikes), in the marker colour.
    pub markers: Vec<(f64, f64)>,
}

/// Colours for series, in order.
pub const PALETTE: [[u8; 3]; 4] = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [148, 103, 189]];
/// Marker colour.
pub const MARKER: [u8; 3] = [214, 39, 40];
const INK: [u8; 3] = [40, 40, 40];
const GRID: [u8; 3] = [225, 225, 225];
const GLYPH: i64 = 8;

/// `{:.3}`-like but short for very large or small magnitudes.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-2..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

struct Canvas<'a> {
    img: &'a mut RgbImage,
}

impl Canvas<'_> {
    fn put(&mut self, x: i64, y: i64, c: [u8; 3]) {
        let (w, h) = (self.img.width as i64, self.img.height as i64);
        if (0..w).contains(&x) && (0..h).contains(&y) {
            let i = ((y * w + x) * 3) as usize;
            self.img.data[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        for x in x0..=x1 {
            self.put(x, y0, c);
            self.put(x, y1, c);
        }
        for y in y0..=y1 {
            self.put(x0, y, c);
            self.put(x1, y, c);
        }
    }

    fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.put(x, y, c);
            }
        }
    }

    /// A 2-pixel-wide line (DDA).
    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3]) {
        let n = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as i64;
        for i in 0..=n {
            let t = i as f64 / n as f64;
            let (x, y) = ((x0 + t * (x1 - x0)).round() as i64, (y0 + t * (y1 - y0)).round() as i64);
            self.put(x, y, c);
            self.put(x, y + 1, c);
        }
    }

    /// Text with its top-left corner at (x, y), each font pixel `scale`² image pixels.
    fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            let glyph = BASIC_FONTS.get(ch).or_else(|| BASIC_FONTS.get('?')).unwrap_or([0; 8]);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        let gx = x + (k as i64 * GLYPH + col) * scale;
                        let gy = y + row as i64 * scale;
                        self.fill(gx, gy, gx + scale - 1, gy + scale - 1, c);
                    }
                }
            }
        }
    }
}

fn text_width(s: &str, scale: i64) -> i64 {
    s.chars().count() as i64 * GLYPH * scale
}

/// Finite range of `vs`, widened when flat; `None` without finite values.
fn range(vs: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vs.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return None;
    }
    if hi - lo < 1e-12 * hi.abs().max(1.0) {
        let pad = hi.abs().max(1.0) * 0.05;
        return Some((lo - pad, hi + pad));
    }
    Some((lo, hi))
}

fn draw_panel(c: &mut Canvas<'_>, p: &Panel, x0: i64, y0: i64, w: i64, h: i64) {
    c.text(x0 + 8, y0 + 6, &p.title, 2, INK);
    // Frame: room for y labels on the left, x labels below, legend at the top right.
    let (fx0, fy0, fx1, fy1) = (x0 + 80, y0 + 30, x0 + w - 12, y0 + h - 24);
    c.rect(fx0, fy0, fx1, fy1, INK);
    let xs = p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0));
    let ys = p.series.iter().flat_map(|s| s.points.iter().map(|q| q.1));
    let (Some((xl, xh)), Some((yl, yh))) = (range(xs), range(ys)) else {
        c.text(fx0 + 10, fy0 + 10, "no data", 1, INK);
        return;
    };
    for k in 1..4 {
        let gy = fy0 + (fy1 - fy0) * k / 4;
        for x in fx0 + 1..fx1 {
            c.put(x, gy, GRID);
        }
    }
    let to_px = |(x, y): (f64, f64)| {
        let px = fx0 as f64 + 2.0 + (x - xl) / (xh - xl).max(1e-300) * (fx1 - fx0 - 4) as f64;
        let py = fy1 as f64 - 2.0 - (y - yl) / (yh - yl) * (fy1 - fy0 - 4) as f64;
        (px, py)
    };
    for (k, label) in [(0, fmt_num(yh)), (2, fmt_num((yl + yh) / 2.0)), (4, fmt_num(yl))] {
        let gy = fy0 + (fy1 - fy0) * k / 4 - 4;
        c.text(fx0 - 6 - text_width(&label, 1), gy, &label, 1, INK);
    }
    c.text(fx0, fy1 + 8, &fmt_num(xl), 1, INK);
    let xh_label = fmt_num(xh);
    c.text(fx1 - text_width(&xh_label, 1), fy1 + 8, &xh_label, 1, INK);
    for s in &p.series {
        let mut prev: Option<(f64, f64)> = None;
        for &q in &s.points {
            if !(q.0.is_finite() && q.1.is_finite()) {
                prev = None;
                continue;
            }
            let cur = to_px(q);
            if s.points.len() <= 20 {
                // Few points (e.g. periodic evaluations): show each one.
                c.fill(
                    cur.0 as i64 - 2,
                    cur.1 as i64 - 2,
                    cur.0 as i64 + 2,
                    cur.1 as i64 + 2,
                    s.color,
                );
            }
            match prev {
                Some(a) => c.line(a, cur, s.color),
                None => {
                    c.fill(cur.0 as i64, cur.1 as i64, cur.0 as i64 + 1, cur.1 as i64 + 1, s.color)
                }
            }
            prev = Some(cur);
        }
    }
    for &q in p.markers.iter().filter(|q| q.0.is_finite() && q.1.is_finite()) {
        let (px, py) = to_px(q);
        c.fill(px as i64 - 3, py as i64 - 3, px as i64 + 3, py as i64 + 3, MARKER);
    }
    let mut ly = fy0 + 6;
    for s in p.series.iter().filter(|s| !s.label.is_empty()) {
        let lx = fx1 - 8 - text_width(&s.label, 1) - 18;
        c.fill(lx, ly + 3, lx + 12, ly + 4, s.color);
        c.text(lx + 18, ly, &s.label, 1, s.color);
        ly += 12;
    }
}

/// Renders `panels` row by row, `cols` per row, each `panel_w`×`panel_h` pixels, on white.
pub fn render(panels: &[Panel], cols: u32, panel_w: u32, panel_h: u32) -> RgbImage {
    let cols = cols.max(1);
    let rows = (panels.len() as u32).div_ceil(cols).max(1);
    let mut img = RgbImage::new(cols * panel_w, rows * panel_h);
    img.data.fill(255);
    let mut c = Canvas { img: &mut img };
    for (i, p) in panels.iter().enumerate() {
        let (col, row) = (i as u32 % cols, i as u32 / cols);
        let (x0, y0) = ((col * panel_w) as i64, (row * panel_h) as i64);
        draw_panel(&mut c, p, x0, y0, panel_w as i64, panel_h as i64);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(img: &RgbImage, c: [u8; 3]) -> usize {
        img.data.chunks_exact(3).filter(|p| *p == c).count()
    }

    #[test]
    fn panels_draw_their_series_markers_and_text() {
        let rising = Series {
            label: "a".into(),
            points: (0..50).map(|i| (i as f64, i as f64)).collect(),
            color: PALETTE[0],
        };
        let gap = Series {
            label: String::new(),
            points: vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, 3.0)],
            color: PALETTE[1],
        };
        let panels = [
            Panel { title: "loss".into(), series: vec![rising], markers: vec![(10.0, 10.0)] },
            Panel { title: "gap".into(), series: vec![gap], markers: vec![] },
            Panel { title: "empty".into(), ..Panel::default() },
        ];
        let img = render(&panels, 2, 300, 200);
        assert_eq!((img.width, img.height), (600, 400));
        assert!(count(&img, PALETTE[0]) > 200, "the rising line is drawn");
        assert!(count(&img, MARKER) >= 49, "the marker is a 7×7 square");
        // A NaN breaks the line: the orange series (few points, so each drawn as a 5×5 dot) is
        // two isolated dots, nothing between.
        assert_eq!(count(&img, PALETTE[1]), 50);
        assert!(count(&img, INK) > 500, "frames and text");
        // The rising line goes from bottom left to top right of its frame.
        let at = |x: u32, y: u32| {
            let i = ((y * img.width + x) * 3) as usize;
            [img.data[i], img.data[i + 1], img.data[i + 2]]
        };
        let frame_rows: Vec<u32> =
            (0..200).filter(|&y| (80..300).any(|x| at(x, y) == PALETTE[0])).collect();
        let left: Vec<u32> =
            (0..200).filter(|&y| (82..100).any(|x| at(x, y) == PALETTE[0])).collect();
        assert!(!frame_rows.is_empty() && !left.is_empty());
        assert!(left.iter().min() > frame_rows.iter().min(), "starts low on the left");
    }

    #[test]
    fn numbers_stay_short() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(365.0), "365");
        assert_eq!(fmt_num(5.0), "5");
        assert_eq!(fmt_num(1.23456), "1.235");
        assert_eq!(fmt_num(1234.5), "1234");
        assert_eq!(fmt_num(1.5e-4), "1.50e-4");
        assert_eq!(fmt_num(2.5e6), "2.50e6");
    }
}
