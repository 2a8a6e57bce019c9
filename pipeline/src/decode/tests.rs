//! Decoder unit tests on images made here; the corpus and Pillow comparisons are integration
//! tests (tests/integration/decode_corpus.rs).

use super::*;

fn gradient(w: u32, h: u32) -> RgbImage {
    let data = (0..h)
        .flat_map(|y| {
            (0..w).flat_map(move |x| {
                [(x * 255 / w) as u8, (y * 255 / h) as u8, ((x + y) % 256) as u8]
            })
        })
        .collect();
    RgbImage::try_from_vec(data, w, h).unwrap()
}

fn jpeg_of(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new().encode(img.view(), quality, &mut out).unwrap();
    out
}

#[test]
fn jpeg_round_trip_is_close() {
    let img = gradient(97, 61);
    let d = Decoder::new().decode(&jpeg_of(&img, 95), "g", &DecodeOptions::default()).unwrap();
    assert_eq!(
        (d.image.width(), d.image.height(), d.format, d.scale_eighths),
        (97, 61, Format::Jpeg, 8)
    );
    let mad: f64 = d
        .image
        .view()
        .data()
        .iter()
        .zip(img.view().data())
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .sum::<f64>()
        / (97.0 * 61.0 * 3.0);
    assert!(mad < 3.0, "mean abs diff {mad}");
}

#[test]
fn dct_scaling_picks_the_smallest_scale_that_keeps_the_floor() {
    let jpeg = jpeg_of(&gradient(640, 480), 90);
    let mut dec = Decoder::new();
    let opts = |floor| DecodeOptions { dct_scale_floor: Some(floor), ..Default::default() };
    // Power-of-two scales only: short side 480 -> >= 256 needs more than 4/8 (240): full size.
    let d = dec.decode(&jpeg, "g", &opts((256, 0))).unwrap();
    assert_eq!((d.scale_eighths, d.image.width(), d.image.height()), (8, 640, 480));
    let d = dec.decode(&jpeg, "g", &opts((240, 0))).unwrap();
    assert_eq!((d.scale_eighths, d.image.width(), d.image.height()), (4, 320, 240));
    let d = dec.decode(&jpeg, "g", &opts((60, 0))).unwrap();
    assert_eq!((d.scale_eighths, d.image.width(), d.image.height()), (1, 80, 60));
    let d = dec.decode(&jpeg, "g", &opts((481, 0))).unwrap();
    assert_eq!(d.scale_eighths, 8, "never below the floor, never above full size");
    let d = dec.decode(&jpeg, "g", &opts((0, 320))).unwrap();
    assert_eq!((d.scale_eighths, d.image.width()), (4, 320));
}

#[test]
fn failures_are_classified_and_name_the_input() {
    let mut dec = Decoder::new();
    let opts = DecodeOptions::default();
    let kind = |r: Result<Decoded, Error>| match r {
        Err(Error::Decode { what, kind, reason }) => {
            assert_eq!(what, "in.jpg");
            assert!(!reason.is_empty());
            kind
        }
        other => panic!("expected a decode error, got {other:?}"),
    };
    assert_eq!(kind(dec.decode(b"", "in.jpg", &opts)), DecodeFailure::Empty);
    assert_eq!(kind(dec.decode(b"GIF89a....", "in.jpg", &opts)), DecodeFailure::NotAnImage);
    let jpeg = jpeg_of(&gradient(128, 128), 90);
    assert_eq!(
        kind(dec.decode(&jpeg[..jpeg.len() / 2], "in.jpg", &opts)),
        DecodeFailure::Truncated
    );
    assert_eq!(kind(dec.decode(&jpeg[..20], "in.jpg", &opts)), DecodeFailure::Truncated);
    let small = DecodeOptions { max_pixels: 128 * 127, ..opts };
    assert_eq!(kind(dec.decode(&jpeg, "in.jpg", &small)), DecodeFailure::TooLarge);
    // A decoder that failed still works.
    assert!(dec.decode(&jpeg, "in.jpg", &opts).is_ok());
}

#[test]
fn extraneous_bytes_are_a_warning_not_an_error() {
    // Garbage before the frame header: libjpeg warns "extraneous bytes before marker 0xc0";
    // Pillow decodes such files, so must we.
    let jpeg = jpeg_of(&gradient(64, 48), 90);
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    let mut bad = jpeg[..sof].to_vec();
    bad.extend_from_slice(&[0x12, 0x34, 0x56]);
    bad.extend_from_slice(&jpeg[sof..]);
    let d = Decoder::new().decode(&bad, "x", &DecodeOptions::default()).unwrap();
    assert!(d.warning.as_deref().is_some_and(|w| w.contains("extraneous")), "{:?}", d.warning);
    let clean = Decoder::new().decode(&jpeg, "x", &DecodeOptions::default()).unwrap();
    assert_eq!(d.image.view().data(), clean.image.view().data());
}

#[test]
fn png_is_decoded_by_content_whatever_the_name() {
    let img = gradient(33, 17);
    let mut png = Vec::new();
    image::RgbImage::from_raw(33, 17, img.view().data().to_vec())
        .unwrap()
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let d = Decoder::new().decode(&png, "n01/x.JPEG", &DecodeOptions::default()).unwrap();
    assert_eq!(d.format, Format::Png);
    assert_eq!(d.image.view().data(), img.view().data());
}

#[test]
fn exif_orientation_is_ignored_unless_asked() {
    let img = gradient(40, 20);
    let jpeg = jpeg_of(&img, 95);
    for o in 1u8..=8 {
        // Insert an APP1 Exif segment (little-endian TIFF, IFD0 with one entry) after SOI.
        let mut tiff = b"II*\0\x08\0\0\0\x01\0".to_vec();
        tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, o, 0, 0, 0, 0, 0, 0, 0]);
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut file = jpeg[..2].to_vec();
        file.extend_from_slice(&[0xFF, 0xE1]);
        file.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        file.extend_from_slice(&app1);
        file.extend_from_slice(&jpeg[2..]);
        assert_eq!(markers::jpeg_orientation(&file), Some(o));
        let mut dec = Decoder::new();
        let plain = dec.decode(&file, "x", &DecodeOptions::default()).unwrap().image;
        assert_eq!((plain.width(), plain.height()), (40, 20));
        let turned = dec
            .decode(
                &file,
                "x",
                &DecodeOptions { apply_exif_orientation: true, ..Default::default() },
            )
            .unwrap()
            .image;
        let expect = if o >= 5 { (20, 40) } else { (40, 20) };
        assert_eq!((turned.width(), turned.height()), expect, "orientation {o}");
        // Orientation 6 (rotate 90° clockwise to display): the displayed top-left pixel is the
        // stored bottom-left one.
        if o == 6 {
            let p = |im: &RgbImage, x: usize, y: usize| {
                im.view().data()[(y * im.width() as usize + x) * 3]
            };
            assert_eq!(p(&turned, 0, 0), p(&plain, 0, 19));
        }
    }
}

#[test]
fn cmyk_matches_pil_arithmetic() {
    // PIL: inverted CMYK (c' = 255 - stored), then R = nk - MULDIV255(c', nk), nk = 255 - k'.
    let px = [0u8, 255, 128, 255, /* */ 10, 20, 30, 0, /* */ 255, 255, 255, 200];
    let rgb = cmyk_to_rgb(&px);
    assert_eq!(&rgb[..3], &[0, 255, 128]);
    assert_eq!(&rgb[3..6], &[0, 0, 0]);
    // stored K=200 -> nk = 200; stored C=255 -> c' = 0 -> R = 200.
    assert_eq!(&rgb[6..9], &[200, 200, 200]);
}

/// Byte offsets of the marker segments before the scan: (offset of 0xFF, marker, total length
/// including the two marker bytes). Only for files made here (well-formed).
fn segments(jpeg: &[u8]) -> Vec<(usize, u8, usize)> {
    let mut out = Vec::new();
    let mut i = 2;
    loop {
        let m = jpeg[i + 1];
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        out.push((i, m, 2 + len));
        if m == 0xDA {
            return out;
        }
        i += 2 + len;
    }
}

fn without(jpeg: &[u8], marker: u8) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let segs = segments(jpeg);
    let mut at = 2;
    for &(i, m, n) in &segs {
        if m != marker {
            out.extend_from_slice(&jpeg[i..i + n]);
        }
        at = i + n;
    }
    out.extend_from_slice(&jpeg[at..]);
    out
}

#[test]
fn a_failed_decode_never_changes_the_next_one() {
    // Every cut inside the header segments, then the good file on the same decoder: the good
    // file's bytes must be what a fresh decoder gives (libjpeg left mid-header used to parse
    // the next file as a continuation: "Bogus Huffman table definition").
    let good = jpeg_of(&gradient(120, 90), 90);
    let bad_source = jpeg_of(&gradient(100, 100), 75);
    let expect = Decoder::new().decode(&good, "good", &DecodeOptions::default()).unwrap();
    let sos = segments(&bad_source).last().unwrap().0;
    let mut dec = Decoder::new();
    for cut in 3..sos + 6 {
        let r = dec.decode(&bad_source[..cut], "bad", &DecodeOptions::default());
        match r {
            Err(Error::Decode { kind: DecodeFailure::Truncated, .. }) => {}
            other => panic!("cut at {cut}: expected truncated, got {other:?}"),
        }
        let d = dec.decode(&good, "good", &DecodeOptions::default()).unwrap_or_else(|e| {
            panic!("good file after a cut at {cut} of the bad one: {e}");
        });
        assert_eq!(d.image.view().data(), expect.image.view().data(), "after cut {cut}");
        assert!(d.warning.is_none(), "after cut {cut}: {:?}", d.warning);
    }
}

#[test]
fn tables_of_one_file_never_serve_the_next() {
    // A file without quantization tables cannot be decoded (libjpeg: "Quantization table 0x00
    // was not defined", as in Pillow) -- also right after a file that had them.
    let good = jpeg_of(&gradient(64, 64), 90);
    let no_dqt = without(&good, 0xDB);
    assert!(Decoder::new().decode(&no_dqt, "x", &DecodeOptions::default()).is_err());
    let mut dec = Decoder::new();
    dec.decode(&good, "g", &DecodeOptions::default()).unwrap();
    let r = dec.decode(&no_dqt, "x", &DecodeOptions::default());
    assert!(
        matches!(r, Err(Error::Decode { kind: DecodeFailure::Corrupt, .. })),
        "a DQT-less file after a good one: {r:?}"
    );
}

#[test]
fn the_header_reports_a_cut_as_truncated_never_as_a_giant_size() {
    // A fresh decoder (as on a new worker thread) used to read TurboJPEG's "unknown" size
    // (-1 as u32) for a file cut between its frame header and its scan.
    let jpeg = jpeg_of(&gradient(100, 100), 75);
    let sof = segments(&jpeg).iter().find(|s| s.1 == 0xC0).copied().unwrap();
    for cut in sof.0 + sof.2..segments(&jpeg).last().unwrap().0 + 2 {
        match Decoder::new().decode(&jpeg[..cut], "cut", &DecodeOptions::default()) {
            Err(Error::Decode { kind: DecodeFailure::Truncated, reason, .. }) => {
                assert!(!reason.contains("4294967295"), "{reason}")
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn a_cut_after_another_warning_is_still_truncated() {
    // libjpeg prints only its first warning: with extraneous bytes before the frame header,
    // running out of scan data is silent in its message. Pillow refuses the file; so do we.
    let jpeg = jpeg_of(&gradient(64, 48), 90);
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    let mut bad = jpeg[..sof].to_vec();
    bad.extend_from_slice(&[0x12, 0x34, 0x56]);
    bad.extend_from_slice(&jpeg[sof..jpeg.len() - 10]);
    match Decoder::new().decode(&bad, "x", &DecodeOptions::default()) {
        Err(Error::Decode { kind: DecodeFailure::Truncated, reason, .. }) => {
            assert!(reason.contains("end-of-image"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}
