//! Walking a JPEG's marker segments without decoding: the frame header (size, precision) and
//! the EXIF orientation tag (0x0112) of its APP1 segment.

/// The first SOFn frame header before the scan data: (width, height, precision), or why not.
/// `Err(true)` when the data ran out first (truncated), `Err(false)` when there is no frame.
pub(crate) fn jpeg_frame(jpeg: &[u8]) -> Result<(u32, u32, u8), bool> {
    let mut found = None;
    let complete = walk(jpeg, |marker, seg| {
        let sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if sof && seg.len() >= 5 {
            let h = u16::from_be_bytes([seg[1], seg[2]]) as u32;
            let w = u16::from_be_bytes([seg[3], seg[4]]) as u32;
            found = Some((w, h, seg[0]));
            return true;
        }
        false
    });
    found.ok_or(!complete)
}

/// Orientation 1..=8 from the first APP1 "Exif" segment before the image data, if any.
pub(crate) fn jpeg_orientation(jpeg: &[u8]) -> Option<u8> {
    let mut found = None;
    walk(jpeg, |marker, seg| {
        if marker == 0xE1 && seg.starts_with(b"Exif\0\0") {
            found = tiff_orientation(&seg[6..]);
            return true;
        }
        false
    });
    found
}

/// Calls `f(marker, payload)` for each segment after SOI until `f` returns true, or SOS/EOI.
/// Returns false when the data ends in the middle of the header segments.
fn walk(jpeg: &[u8], mut f: impl FnMut(u8, &[u8]) -> bool) -> bool {
    let mut i = 2; // after SOI
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            i += 1; // garbage between segments: libjpeg skips it with a warning, so do we
            continue;
        }
        let marker = jpeg[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            return true; // start of scan / end of image
        }
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        let Some(seg) = jpeg.get(i + 4..i + 2 + len.max(2)) else { return false };
        if f(marker, seg) {
            return true;
        }
        i += 2 + len.max(2);
    }
    false
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
