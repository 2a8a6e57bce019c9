//! Walking a JPEG's marker segments without decoding: the file's structure (frame header, where
//! the scan starts, whether an end-of-image marker follows) and the EXIF orientation tag
//! (0x0112) of its APP1 segment. Every read is bounds-checked: a segment that runs past the end
//! of the data is a truncation, never a size read from beyond it.

/// What the frame header (SOFn) says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub width: u32,
    pub height: u32,
    pub precision: u8,
}

/// Why the structure walk refuses a file. The reasons are about bytes the walk saw, so they
/// are true by construction; anything the walk cannot judge is left to libjpeg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Damage {
    /// The data ends inside a segment, or before the scan, or before the end-of-image marker.
    Truncated(String),
    /// The segments are complete but make no image (no frame header, tables only).
    Corrupt(String),
}

/// The header segments as libjpeg reads them, up to the start of the first scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Header {
    /// SOS reached; the frame, and the offset of the first byte after the SOS segment.
    Scan { frame: Frame, data: usize },
    /// A marker libjpeg refuses ("Unsupported marker type") before the scan: libjpeg's own
    /// message is the true reason, so the walk stops and says nothing.
    Unknown,
}

/// libjpeg's `read_markers` knows these; any other marker code before the scan is fatal there.
fn known_marker(m: u8) -> bool {
    matches!(m, 0xC0..=0xC7 | 0xC9..=0xCF | 0xDA..=0xDD | 0xE0..=0xEF | 0xFE) || standalone(m)
}

/// Markers without a length field.
fn standalone(m: u8) -> bool {
    matches!(m, 0x01 | 0xD0..=0xD7 | 0xD8 | 0xD9)
}

fn is_sof(m: u8) -> bool {
    matches!(m, 0xC0..=0xCF) && !matches!(m, 0xC4 | 0xC8 | 0xCC)
}

/// One marker found at `at` (its 0xFF): the code and where its segment ends (exclusive).
/// Skips what libjpeg's `next_marker` skips: bytes other than 0xFF, fill bytes, and `FF 00`.
struct Marker {
    at: usize,
    code: u8,
    end: usize,
}

enum Next {
    Marker(Marker),
    /// The data ended before another marker.
    End,
}

/// The next marker at or after `i`. `Err` when its declared segment runs past the end.
fn next_marker(jpeg: &[u8], mut i: usize) -> Result<Next, Damage> {
    loop {
        let Some(off) = jpeg.get(i..).and_then(|s| s.iter().position(|&b| b == 0xFF)) else {
            return Ok(Next::End);
        };
        let at = i + off;
        let Some(&code) = jpeg.get(at + 1) else { return Ok(Next::End) };
        match code {
            0xFF => i = at + 1, // fill byte
            0x00 => i = at + 2, // stuffed zero / garbage
            c if standalone(c) || !known_marker(c) => {
                return Ok(Next::Marker(Marker { at, code: c, end: at + 2 }));
            }
            c => {
                let Some(len) = jpeg.get(at + 2..at + 4) else {
                    return Err(Damage::Truncated(format!(
                        "data ends at byte {} inside the length of marker 0x{c:02x} at byte {at}",
                        jpeg.len()
                    )));
                };
                let len = u16::from_be_bytes([len[0], len[1]]) as usize;
                // libjpeg reads a length below 2 as a segment of just the length bytes.
                let end = at + 2 + len.max(2);
                if end > jpeg.len() {
                    return Err(Damage::Truncated(format!(
                        "segment 0x{c:02x} at byte {at} declares {len} bytes; the data ends {} bytes \
                         into it",
                        jpeg.len() - at - 2
                    )));
                }
                return Ok(Next::Marker(Marker { at, code: c, end }));
            }
        }
    }
}

/// Walks the header segments after SOI up to the first scan.
pub(crate) fn jpeg_header(jpeg: &[u8]) -> Result<Header, Damage> {
    let mut frame = None;
    let mut i = 2; // after SOI
    loop {
        let m = match next_marker(jpeg, i)? {
            Next::Marker(m) => m,
            Next::End => {
                return Err(Damage::Truncated(format!(
                    "data ends at byte {} inside the header segments, before the scan",
                    jpeg.len()
                )));
            }
        };
        if !known_marker(m.code) {
            return Ok(Header::Unknown);
        }
        if is_sof(m.code) && frame.is_none() {
            let seg = &jpeg[m.at + 4..m.end];
            if seg.len() >= 5 {
                frame = Some(Frame {
                    precision: seg[0],
                    height: u16::from_be_bytes([seg[1], seg[2]]) as u32,
                    width: u16::from_be_bytes([seg[3], seg[4]]) as u32,
                });
            }
        }
        match (m.code, frame) {
            (0xDA, Some(frame)) => return Ok(Header::Scan { frame, data: m.end }),
            (0xDA, None) => {
                return Err(Damage::Corrupt(format!(
                    "no frame header (SOF) before the scan at byte {}",
                    m.at
                )));
            }
            (0xD9, _) => {
                return Err(Damage::Corrupt(format!(
                    "end-of-image marker at byte {} before any scan ({})",
                    m.at,
                    if frame.is_some() {
                        "a frame header but no image data"
                    } else {
                        "tables only"
                    }
                )));
            }
            _ => i = m.end,
        }
    }
}

/// From the first byte of scan data at `data`, whether an end-of-image marker follows (through
/// entropy-coded data, restart markers and the segments between progressive scans). libjpeg
/// reads to EOI; when the data ends first it pads and warns, and Pillow refuses the file.
pub(crate) fn jpeg_scan_ends(jpeg: &[u8], data: usize) -> Result<(), String> {
    let mut i = data;
    loop {
        match next_marker(jpeg, i) {
            Ok(Next::Marker(m)) if m.code == 0xD9 => return Ok(()),
            Ok(Next::Marker(m)) => i = m.end,
            Ok(Next::End) | Err(_) => {
                return Err(format!(
                    "the scan data ends at byte {} without an end-of-image marker",
                    jpeg.len()
                ));
            }
        }
    }
}

/// Orientation 1..=8 from the first APP1 "Exif" segment before the image data, if any.
pub(crate) fn jpeg_orientation(jpeg: &[u8]) -> Option<u8> {
    let mut i = 2;
    loop {
        let Ok(Next::Marker(m)) = next_marker(jpeg, i) else { return None };
        if matches!(m.code, 0xDA | 0xD9) || !known_marker(m.code) {
            return None;
        }
        let seg = &jpeg[(m.at + 4).min(m.end)..m.end];
        if m.code == 0xE1 && seg.starts_with(b"Exif\0\0") {
            return tiff_orientation(&seg[6..]);
        }
        i = m.end;
    }
}

/// Orientation from a TIFF structure (the EXIF payload): IFD0's tag 0x0112.
fn tiff_orientation(t: &[u8]) -> Option<u8> {
    let le = match t.get(..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let u16_at = |o: usize| {
        t.get(o..o + 2).map(|b| {
            if le { u16::from_le_bytes([b[0], b[1]]) } else { u16::from_be_bytes([b[0], b[1]]) }
        })
    };
    let u32_at = |o: usize| {
        t.get(o..o + 4).map(|b| {
            let a = [b[0], b[1], b[2], b[3]];
            if le { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) }
        })
    };
    let ifd = u32_at(4)? as usize;
    let n = u16_at(ifd)? as usize;
    for e in 0..n {
        let at = ifd + 2 + 12 * e;
        if u16_at(at)? == 0x0112 {
            let v = u16_at(at + 8)?;
            return (1..=8).contains(&v).then_some(v as u8);
        }
    }
    None
}
