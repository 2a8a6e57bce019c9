//! Decoding image files to RGB the way the reference loader (PIL's `open(...).convert("RGB")`)
//! sees them, fast: JPEG through libjpeg-turbo 3.1 (optionally DCT-scaled toward a target
//! size), PNG through the `image` crate, chosen by content, not by name.
//!
//! - grayscale → RGB by replication; CMYK/YCCK → RGB with PIL's arithmetic (Adobe-inverted CMYK);
//! - libjpeg warnings (extraneous bytes, corrupt segments) keep their output, as in Pillow;
//!   a premature end of file is an error ([`DecodeFailure::Truncated`]), as in Pillow;
//! - EXIF orientation is ignored unless asked for (ImageFolder ignores it);
//! - images over a pixel limit are refused before any pixel is allocated (Pillow's bomb check).

mod jpeg;
mod markers;

use std::path::Path;

pub use crate::decode_find::find_images;
use crate::{Error, RgbImage};

/// Pillow's `DecompressionBombError` threshold: 2 × `Image.MAX_IMAGE_PIXELS`.
pub const DEFAULT_MAX_PIXELS: u64 = 2 * 89_478_485;

/// Why an input could not be decoded; the summary groups skipped files by this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeFailure {
    /// Zero bytes.
    Empty,
    /// Neither a JPEG nor a PNG by content.
    NotAnImage,
    /// The data ends before the image does.
    Truncated,
    /// More pixels than the limit (a decompression bomb, or just too large).
    TooLarge,
    /// A format feature the decoder does not handle (e.g. 12-bit or lossless JPEG).
    Unsupported,
    /// Damaged data the decoder gave up on.
    Corrupt,
}

impl DecodeFailure {
    /// A short lowercase name for summaries.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::NotAnImage => "not an image",
            Self::Truncated => "truncated",
            Self::TooLarge => "too large",
            Self::Unsupported => "unsupported",
            Self::Corrupt => "corrupt",
        }
    }
}

/// The container format, by content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JPEG (SOI marker).
    Jpeg,
    /// PNG (signature).
    Png,
}

/// Sniffs the format from the first bytes.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else {
        None
    }
}

/// How to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Refuse images with more pixels than this (checked from the header).
    pub max_pixels: u64,
    /// Rotate/flip by the EXIF orientation tag (JPEG only). Off by default, as ImageFolder.
    pub apply_exif_orientation: bool,
    /// Let libjpeg-turbo decode at a reduced scale (n/8) as long as the image stays at least
    /// this size: `(short side, long side)` minimums, either 0 for no constraint. `None`
    /// decodes at full size.
    pub dct_scale_floor: Option<(u32, u32)>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_pixels: DEFAULT_MAX_PIXELS,
            apply_exif_orientation: false,
            dct_scale_floor: None,
        }
    }
}

/// A side of `side` pixels decoded at `eighths`/8 (libjpeg's DCT scaling rounds up).
pub fn dct_scaled(side: u32, eighths: u32) -> u32 {
    (u64::from(side) * u64::from(eighths)).div_ceil(8) as u32
}

/// A decoded image and what happened on the way.
#[derive(Debug)]
pub struct Decoded {
    /// The pixels.
    pub image: RgbImage,
    /// Format by content.
    pub format: Format,
    /// Size in the file, before DCT scaling and orientation (width, height).
    pub original_size: (u32, u32),
    /// DCT scale used, in eighths (8 = full size).
    pub scale_eighths: u8,
    /// Size the image has at full scale after orientation: what a full decode would give, and
    /// what a resize target must be computed from (so DCT scaling never changes the output size).
    pub full_size: (u32, u32),
    /// A libjpeg warning that did not stop the decode (Pillow ignores these too).
    pub warning: Option<String>,
    /// The colour space in the file was CMYK or YCCK.
    pub cmyk: bool,
}

/// A reusable decoder: one per worker thread. Holds scratch memory only: every JPEG gets a
/// fresh TurboJPEG instance, so nothing of one image (its tables, a failure half-way through
/// its header) can reach the next, whatever the order of files or the number of threads.
pub struct Decoder {
    scratch: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A new decoder.
    pub fn new() -> Self {
        Self { scratch: Vec::new() }
    }

    /// Decodes JPEG or PNG `bytes` to RGB; `what` (a path or row) names them in errors.
    pub fn decode(
        &mut self,
        bytes: &[u8],
        what: &str,
        opts: &DecodeOptions,
    ) -> Result<Decoded, Error> {
        self.decode_into(bytes, what, opts, Vec::new())
    }

    /// [`Decoder::decode`] into `buffer`'s allocation (e.g. the previous image's, from
    /// [`RgbImage::into_vec`]): a worker that hands each image back decodes same-sized JPEGs
    /// without allocating or zeroing. Its contents do not matter; PNGs and CMYK JPEGs allocate.
    pub fn decode_into(
        &mut self,
        bytes: &[u8],
        what: &str,
        opts: &DecodeOptions,
        buffer: Vec<u8>,
    ) -> Result<Decoded, Error> {
        let fail = |kind: DecodeFailure, reason: String| Error::Decode {
            what: what.to_owned(),
            kind,
            reason,
        };
        if bytes.is_empty() {
            return Err(fail(DecodeFailure::Empty, "empty file".into()));
        }
        match sniff(bytes) {
            Some(Format::Jpeg) => {
                self.decode_jpeg(bytes, opts, buffer).map_err(|(k, r)| fail(k, r))
            }
            Some(Format::Png) => decode_png(bytes, opts).map_err(|(k, r)| fail(k, r)),
            None => Err(fail(
                DecodeFailure::NotAnImage,
                format!("not a JPEG or PNG (starts with {:02x?})", &bytes[..bytes.len().min(4)]),
            )),
        }
    }

    fn decode_jpeg(
        &mut self,
        bytes: &[u8],
        opts: &DecodeOptions,
        mut out: Vec<u8>,
    ) -> Result<Decoded, (DecodeFailure, String)> {
        // The structure walk first: it reads every segment's length within bounds, so a file
        // cut inside its header is called truncated (libjpeg would read its fake end-of-image
        // marker as table data and report a bogus table, or a tables-only stream).
        let scan_data = match markers::jpeg_header(bytes) {
            Ok(markers::Header::Scan { frame, data }) => Some((frame, data)),
            Ok(markers::Header::Unknown) => None, // libjpeg names the marker
            Err(markers::Damage::Truncated(r)) => return Err((DecodeFailure::Truncated, r)),
            Err(markers::Damage::Corrupt(r)) => return Err((DecodeFailure::Corrupt, r)),
        };
        let mut tj = jpeg::Handle::decompressor();
        let header = tj.header(bytes).map_err(failure)?;
        if let Some((frame, _)) = scan_data
            && (frame.width, frame.height) != (header.width, header.height)
        {
            return Err((
                DecodeFailure::Corrupt,
                format!(
                    "frame header says {}x{}, libjpeg read {}x{}",
                    frame.width, frame.height, header.width, header.height
                ),
            ));
        }
        let pixels = header.width as u64 * header.height as u64;
        if pixels > opts.max_pixels {
            return Err((
                DecodeFailure::TooLarge,
                format!(
                    "{}x{} = {pixels} pixels exceeds the limit of {}",
                    header.width, header.height, opts.max_pixels
                ),
            ));
        }
        if header.precision != 8 {
            return Err((
                DecodeFailure::Unsupported,
                format!("{}-bit JPEG (only 8-bit is decoded)", header.precision),
            ));
        }
        let orientation = if opts.apply_exif_orientation {
            markers::jpeg_orientation(bytes).unwrap_or(1)
        } else {
            1
        };
        let num = match opts.dct_scale_floor {
            Some((short_min, long_min)) => {
                // Sides as they will be after orientation; scaling is symmetric, so only short/long matter.
                let (short, long) =
                    (header.width.min(header.height), header.width.max(header.height));
                // Only the power-of-two scales: libjpeg-turbo's 3/8, 5/8, 6/8, 7/8 IDCTs have no
                // SIMD and cost more than decoding at full size and resizing (docs/benchmarks.md).
                [1u32, 2, 4, 8]
                    .into_iter()
                    .find(|&n| dct_scaled(short, n) >= short_min && dct_scaled(long, n) >= long_min)
                    .map(|n| n as i32)
                    .unwrap_or(8)
            }
            None => 8,
        };
        let cmyk = matches!(header.colorspace, jpeg::CS_CMYK | jpeg::CS_YCCK);
        let target = if cmyk { &mut self.scratch } else { &mut out };
        let (w, h, warning) = tj.decompress(bytes, &header, num, cmyk, target).map_err(failure)?;
        // libjpeg prints only its first warning: after another one, running out of data
        // ("Premature end of JPEG file", which Pillow refuses) is silent. Then the walk says.
        if warning.is_some()
            && let Some((_, data)) = scan_data
            && let Err(r) = markers::jpeg_scan_ends(bytes, data)
        {
            return Err((DecodeFailure::Truncated, r));
        }
        if cmyk {
            out = cmyk_to_rgb(&self.scratch);
        }
        let mut image = RgbImage::try_from_vec(out, w, h).expect("decoder sized the buffer");
        if orientation != 1 {
            image = orient(&image, orientation);
        }
        Ok(Decoded {
            image,
            format: Format::Jpeg,
            original_size: (header.width, header.height),
            scale_eighths: num as u8,
            full_size: if orientation >= 5 {
                (header.height, header.width)
            } else {
                (header.width, header.height)
            },
            warning,
            cmyk,
        })
    }
}

/// A TurboJPEG failure as a skip reason: its end-of-file warning is a truncation, the rest
/// sorted by [`classify`].
fn failure(e: jpeg::TjError) -> (DecodeFailure, String) {
    let kind = if e.truncated { DecodeFailure::Truncated } else { classify(&e.message) };
    (kind, e.message)
}

/// Sorts libjpeg's fatal messages into [`DecodeFailure`]s. (Truncation is decided before:
/// by the structure walk, or by libjpeg's end-of-file warning.)
fn classify(message: &str) -> DecodeFailure {
    let m = message.to_ascii_lowercase();
    if m.contains("maximum supported image dimension") || m.contains("image is too large") {
        DecodeFailure::TooLarge
    } else if m.contains("unsupported") || m.contains("precision") || m.contains("not supported") {
        DecodeFailure::Unsupported
    } else {
        DecodeFailure::Corrupt
    }
}

/// PIL's CMYK → RGB after its JPEG plugin reads CMYK as Adobe-inverted ("CMYK;I"):
/// with c' = 255 - C etc., R = nk - c'·nk/255 (rounded as PIL's MULDIV255), nk = 255 - k'.
fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    let muldiv255 = |a: u32, b: u32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    let mut out = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        let nk = px[3] as u32; // 255 - (255 - K)
        for &c in &px[..3] {
            let ci = 255 - c as u32;
            out.push((nk - muldiv255(ci, nk)) as u8);
        }
    }
    out
}

/// Applies EXIF orientation `o` (2..=8) as PIL's `ImageOps.exif_transpose` does.
fn orient(img: &RgbImage, o: u8) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src = img.view().data();
    let swap = o >= 5;
    let (ow, oh) = if swap { (h, w) } else { (w, h) };
    let mut out = vec![0u8; ow * oh * 3];
    for y in 0..oh {
        for x in 0..ow {
            // Source coordinate of output (x, y) for each orientation.
            let (sx, sy) = match o {
                2 => (w - 1 - x, y),
                3 => (w - 1 - x, h - 1 - y),
                4 => (x, h - 1 - y),
                5 => (y, x),
                6 => (y, h - 1 - x),
                7 => (w - 1 - y, h - 1 - x),
                8 => (w - 1 - y, x),
                _ => (x, y),
            };
            let (d, s) = ((y * ow + x) * 3, (sy * w + sx) * 3);
            out[d..d + 3].copy_from_slice(&src[s..s + 3]);
        }
    }
    RgbImage::try_from_vec(out, ow as u32, oh as u32).expect("sizes match")
}

/// PNG through the `image` crate, with the pixel limit checked from IHDR first. Alpha is
/// dropped (not composited) and 16-bit samples keep their high byte, as PIL's convert("RGB").
fn decode_png(bytes: &[u8], opts: &DecodeOptions) -> Result<Decoded, (DecodeFailure, String)> {
    let dims = bytes.get(16..24).map(|b| {
        (u32::from_be_bytes([b[0], b[1], b[2], b[3]]), u32::from_be_bytes([b[4], b[5], b[6], b[7]]))
    });
    let (w, h) =
        dims.ok_or((DecodeFailure::Truncated, "PNG shorter than its header".to_owned()))?;
    if w as u64 * h as u64 > opts.max_pixels {
        return Err((
            DecodeFailure::TooLarge,
            format!(
                "{w}x{h} = {} pixels exceeds the limit of {}",
                w as u64 * h as u64,
                opts.max_pixels
            ),
        ));
    }
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png).map_err(|e| {
        let msg = e.to_string();
        let kind = match &e {
            image::ImageError::Unsupported(_) => DecodeFailure::Unsupported,
            image::ImageError::Limits(_) => DecodeFailure::TooLarge,
            _ if msg.contains("EOF") || msg.contains("end of") || msg.contains("unexpected") => {
                DecodeFailure::Truncated
            }
            _ => DecodeFailure::Corrupt,
        };
        (kind, msg)
    })?;
    let rgb: Vec<u8> = match img {
        image::DynamicImage::ImageRgb8(i) => i.into_raw(),
        image::DynamicImage::ImageRgb16(i) => {
            i.into_raw().iter().flat_map(|&v| [(v >> 8) as u8]).collect()
        }
        image::DynamicImage::ImageRgba16(i) => i
            .into_raw()
            .chunks_exact(4)
            .flat_map(|p| [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8])
            .collect(),
        other => other.into_rgb8().into_raw(),
    };
    let image =
        RgbImage::try_from_vec(rgb, w, h).map_err(|e| (DecodeFailure::Corrupt, e.to_string()))?;
    Ok(Decoded {
        image,
        format: Format::Png,
        original_size: (w, h),
        scale_eighths: 8,
        full_size: (w, h),
        warning: None,
        cmyk: false,
    })
}

/// Encodes RGB as JPEG (baseline, 4:2:0) for `--encoding jpeg` shards. One per worker thread.
pub struct JpegEncoder {
    tj: jpeg::Handle,
}

impl Default for JpegEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl JpegEncoder {
    /// A new encoder.
    pub fn new() -> Self {
        Self { tj: jpeg::Handle::compressor() }
    }

    /// Encodes `img` at `quality` (1..=100) into `out` (cleared first).
    pub fn encode(
        &mut self,
        img: crate::RgbRef<'_>,
        quality: u8,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.tj
            .compress_rgb(img.data(), img.width(), img.height(), quality.clamp(1, 100), out)
            .map_err(|reason| Error::Encode {
                what: format!("{}x{} image", img.width(), img.height()),
                reason,
            })
    }
}

/// Decodes JPEG or PNG bytes (by content) to RGB at full size; `what` names them in errors.
pub fn decode_rgb(bytes: &[u8], what: &str) -> Result<RgbImage, Error> {
    Ok(Decoder::new().decode(bytes, what, &DecodeOptions::default())?.image)
}

/// Reads and decodes an image file at full size.
pub fn open_rgb(path: &Path) -> Result<RgbImage, Error> {
    let bytes =
        std::fs::read(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    decode_rgb(&bytes, &path.display().to_string())
}

#[cfg(test)]
mod tests;
