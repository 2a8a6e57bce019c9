//! The decoder against Pillow on real odd files from other projects' test suites, and on
//! imagenette224. Pillow's `open(p).convert("RGB")` (what ImageFolder does) is the reference,
//! computed in the venv by python/decode_reference.py.

use std::collections::BTreeMap;
use std::path::Path;

use twoview_pipeline::decode::{DecodeOptions, Decoder, Format, sniff};

use crate::support;

/// Pillow's verdict per relative path: Ok((w, h)) or Err(message).
fn pillow_verdicts(out: &Path) -> BTreeMap<String, Result<(u32, u32), String>> {
    std::fs::read_to_string(out.join("verdicts.tsv"))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let v = if f[1] == "ok" {
                Ok((f[2].parse().unwrap(), f[3].parse().unwrap()))
            } else {
                Err(f[2].to_owned())
            };
            (f[0].to_owned(), v)
        })
        .collect()
}

struct Diff {
    mean: f64,
    max: u8,
}

fn diff(a: &[u8], b: &[u8]) -> Diff {
    assert_eq!(a.len(), b.len());
    let mut sum = 0u64;
    let mut max = 0u8;
    for (&x, &y) in a.iter().zip(b) {
        let d = x.abs_diff(y);
        sum += d as u64;
        max = max.max(d);
    }
    Diff { mean: sum as f64 / a.len().max(1) as f64, max }
}

/// Tolerances, stated: JPEG through the same libjpeg-turbo arithmetic (islow IDCT, fancy
/// upsampling) is byte-exact with Pillow; CMYK/YCCK go through PIL's own formula, exact too.
/// PNG: exact, except 16-bit files where we keep the high byte and PIL rounds in places.
const JPEG_MAX: u8 = 0;
const PNG_MEAN: f64 = 0.5;
const PNG_MAX: u8 = 1;

/// Files Pillow refuses that we decode, each with why that is right (none the other way round).
const KNOWN: &[(&str, &str)] = &[
    (
        "pillow-tests/1_trns.png",
        "valid PNG; Pillow 12 raises TypeError converting its tRNS in mode 1",
    ),
    (
        "pillow-tests/i_trns.png",
        "valid PNG; Pillow 12 raises TypeError converting its tRNS in mode I",
    ),
    (
        "pillow-tests/apng/chunk_no_fctl.png",
        "APNG animation chunks out of order; the default image (IDAT) is intact",
    ),
    (
        "pillow-tests/png_decompression_dos.png",
        "Pillow's guard on a huge zTXt text chunk; we never read text chunks",
    ),
    (
        "pillow-tests/unknown_compression_method.png",
        "IHDR compression byte != 0; the png crate ignores it, the data inflates",
    ),
];

#[test]
fn corpus_decodes_like_pillow() {
    let Some(corpus) = support::jpeg_corpus() else { return };
    let reference = support::scratch_dir("decode_corpus_ref");
    if support::venv_python("decode_reference.py", &[corpus.as_os_str(), reference.as_os_str()])
        .is_none()
    {
        return;
    }
    let verdicts = pillow_verdicts(&reference);
    assert!(verdicts.len() > 600, "corpus too small: {} files", verdicts.len());
    let mut dec = Decoder::new();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    let (mut exact, mut decoded, mut both_refused) = (0, 0, 0);
    for (rel, pillow) in &verdicts {
        let bytes = std::fs::read(corpus.join(rel)).unwrap();
        // No panic on any input is part of the contract: a panic here fails the test.
        let ours = dec.decode(&bytes, rel, &DecodeOptions::default());
        let known = KNOWN.iter().find(|(k, _)| k == rel);
        match (pillow, ours) {
            (Ok((w, h)), Ok(d)) => {
                decoded += 1;
                if (d.image.width(), d.image.height()) != (*w, *h) {
                    failures.push(format!(
                        "{rel}: size {}x{} vs Pillow {w}x{h}",
                        d.image.width(),
                        d.image.height()
                    ));
                    continue;
                }
                let want = image::open(reference.join(format!("{rel}.png"))).unwrap().into_rgb8();
                let dd = diff(d.image.data(), want.as_raw());
                exact += (dd.max == 0) as usize;
                let ok = match d.format {
                    Format::Jpeg => dd.max == JPEG_MAX,
                    Format::Png => dd.mean <= PNG_MEAN && dd.max <= PNG_MAX,
                };
                if dd.max > 0 {
                    report.push(format!(
                        "{rel}: mean {:.3} max {} ({:?})",
                        dd.mean, dd.max, d.format
                    ));
                }
                if !ok && known.is_none() {
                    failures.push(format!(
                        "{rel}: pixels differ from Pillow: mean {:.3}, max {}",
                        dd.mean, dd.max
                    ));
                }
            }
            (Ok(_), Err(e)) if known.is_none() => {
                failures.push(format!("{rel}: Pillow decodes it, we refuse: {e}"))
            }
            (Err(p), Ok(_)) if known.is_none() => {
                failures.push(format!("{rel}: Pillow refuses ({p}), we decode it"))
            }
            (Err(_), Err(e)) => {
                both_refused += 1;
                report.push(format!("{rel}: refused by both; ours: {e}"));
            }
            _ => {}
        }
    }
    // EXIF orientation, when asked for, matches PIL's ImageOps.exif_transpose.
    let mut oriented = 0;
    for rel in verdicts.keys() {
        let want = reference.join(format!("{rel}.oriented.png"));
        if !want.exists() {
            continue;
        }
        let bytes = std::fs::read(corpus.join(rel)).unwrap();
        let opts = DecodeOptions { apply_exif_orientation: true, ..Default::default() };
        let d = dec.decode(&bytes, rel, &opts).unwrap();
        let want = image::open(want).unwrap().into_rgb8();
        assert_eq!((d.image.width(), d.image.height()), want.dimensions(), "{rel}: oriented size");
        assert!(
            d.image.data() == want.as_raw().as_slice(),
            "{rel}: oriented pixels differ from exif_transpose"
        );
        oriented += 1;
    }
    assert!(oriented >= 7, "only {oriented} files with an EXIF orientation were compared");
    eprintln!(
        "corpus: {oriented} EXIF-oriented files equal to exif_transpose; {} files, {decoded} decoded by both ({exact} byte-exact), {both_refused} refused by both\n  {}",
        verdicts.len(),
        report.join("\n  ")
    );
    assert!(
        failures.is_empty(),
        "{} differences from Pillow:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The comparison must have had teeth: JPEGs and PNGs, and some CMYK among them.
    let jpegs = verdicts
        .keys()
        .filter(|k| sniff(&std::fs::read(corpus.join(k)).unwrap()) == Some(Format::Jpeg))
        .count();
    assert!(jpegs > 100 && decoded > 600, "jpegs {jpegs}, decoded {decoded}");
}

/// Variants of a real photo that ImageNet-like folders hold (CMYK, grayscale, progressive,
/// 4:4:4/4:2:2, restart markers, a PNG named .JPEG, RGBA/palette/gray PNGs), made by Pillow:
/// every one byte-exact with Pillow's convert("RGB").
#[test]
fn odd_variants_of_a_photo_decode_exactly_like_pillow() {
    let Some(imagenette) = support::imagenette() else { return };
    let photo = &support::imagenette_sample(&imagenette, 1, 1)[0];
    let odd = support::scratch_dir("decode_odd");
    let reference = support::scratch_dir("decode_odd_ref");
    if support::venv_python(
        "decode_reference.py",
        &["--make-odd".as_ref(), photo.as_os_str(), odd.as_os_str()],
    )
    .is_none()
    {
        return;
    }
    support::venv_python("decode_reference.py", &[odd.as_os_str(), reference.as_os_str()]).unwrap();
    let verdicts = pillow_verdicts(&reference);
    assert_eq!(verdicts.len(), 10);
    let mut dec = Decoder::new();
    for (rel, pillow) in &verdicts {
        assert!(pillow.is_ok(), "{rel}: Pillow refused its own file");
        let d = dec
            .decode(&std::fs::read(odd.join(rel)).unwrap(), rel, &DecodeOptions::default())
            .unwrap();
        let want = image::open(reference.join(format!("{rel}.png"))).unwrap().into_rgb8();
        assert_eq!((d.image.width(), d.image.height()), want.dimensions(), "{rel}");
        let dd = diff(d.image.data(), want.as_raw());
        assert_eq!(dd.max, 0, "{rel}: mean {:.3} max {} vs Pillow", dd.mean, dd.max);
        assert_eq!(d.cmyk, rel == "cmyk.jpg", "{rel}");
    }
}

/// Every skip reason, each from a real file damaged in the way the reason names: the decoder
/// gives that reason (and the text says what was found), and Pillow refuses the file too.
#[test]
fn every_skip_reason_is_caused_by_what_it_says() {
    use twoview_pipeline::Error;
    use twoview_pipeline::decode::DecodeFailure as F;
    let (Some(imagenette), Some(corpus)) = (support::imagenette(), support::jpeg_corpus()) else {
        return;
    };
    let photo = std::fs::read(&support::imagenette_sample(&imagenette, 1, 1)[0]).unwrap();
    let seg = |marker: u8| {
        let mut i = 2;
        loop {
            let len = u16::from_be_bytes([photo[i + 2], photo[i + 3]]) as usize;
            if photo[i + 1] == marker {
                return (i, 2 + len);
            }
            i += 2 + len;
        }
    };
    let (sos, sos_len) = seg(0xDA);
    let (sof, _) = seg(0xC0);
    let (dqt, dqt_len) = seg(0xDB);
    let (dht, _) = seg(0xC4);
    let with = |at: usize, bytes: &[u8]| {
        let mut v = photo.clone();
        v[at..at + bytes.len()].copy_from_slice(bytes);
        v
    };
    let mut no_dqt = photo[..dqt].to_vec();
    no_dqt.extend_from_slice(&photo[dqt + dqt_len..]);
    let mut warned_then_cut = photo[..sof].to_vec();
    warned_then_cut.extend_from_slice(&[1, 2, 3]);
    warned_then_cut.extend_from_slice(&photo[sof..photo.len() - 100]);
    let cases: Vec<(&str, Vec<u8>, F, &str)> = vec![
        ("empty.jpg", Vec::new(), F::Empty, "empty"),
        (
            "license-text.jpg",
            std::fs::read(corpus.join("libjpeg-turbo-testimages/_license"))
                .unwrap_or(b"text".into()),
            F::NotAnImage,
            "not a JPEG or PNG",
        ),
        ("cut-in-header.jpg", photo[..dqt + 30].to_vec(), F::Truncated, "declares"),
        ("cut-in-sos-length.jpg", photo[..sos + 3].to_vec(), F::Truncated, "inside the length"),
        ("cut-between-segments.jpg", photo[..sos].to_vec(), F::Truncated, "before the scan"),
        ("cut-at-scan-start.jpg", photo[..sos + sos_len].to_vec(), F::Truncated, "Premature end"),
        ("cut-in-scan.jpg", photo[..photo.len() / 2].to_vec(), F::Truncated, "Premature end"),
        ("no-eoi.jpg", photo[..photo.len() - 2].to_vec(), F::Truncated, "Premature end"),
        ("warned-then-cut.jpg", warned_then_cut, F::Truncated, "end-of-image"),
        (
            "sof-20000x20000.jpg",
            with(sof + 5, &[0x4E, 0x20, 0x4E, 0x20]),
            F::TooLarge,
            "20000x20000",
        ),
        ("sof-height-0.jpg", with(sof + 5, &[0, 0]), F::Unsupported, "DNL not supported"),
        (
            "12-bit.jpg",
            std::fs::read(corpus.join("libjpeg-turbo-testimages/testorig12.jpg")).unwrap(),
            F::Unsupported,
            "12-bit",
        ),
        ("no-dqt.jpg", no_dqt, F::Corrupt, "Quantization table 0x00 was not defined"),
        ("dht-counts.jpg", with(dht + 5, &[0xFF; 4]), F::Corrupt, "Bogus Huffman table"),
        ("sof-is-app.jpg", with(sof + 1, &[0xE9]), F::Corrupt, "no frame header"),
    ];
    let dir = support::scratch_dir("skip_reasons");
    let mut dec = Decoder::new();
    for (name, bytes, kind, text) in &cases {
        std::fs::write(dir.join(name), bytes).unwrap();
        match dec.decode(bytes, name, &DecodeOptions::default()) {
            Err(Error::Decode { kind: k, reason, .. }) => {
                assert_eq!((k, reason.contains(text)), (*kind, true), "{name}: {reason}")
            }
            other => panic!("{name}: expected {kind:?}, got {other:?}"),
        }
        // The next file on the same decoder is untouched.
        assert!(dec.decode(&photo, "photo", &DecodeOptions::default()).is_ok(), "after {name}");
    }
    let reference = support::scratch_dir("skip_reasons_ref");
    support::venv_python("decode_reference.py", &[dir.as_os_str(), reference.as_os_str()]).unwrap();
    for (rel, verdict) in pillow_verdicts(&reference) {
        assert!(verdict.is_err(), "{rel}: Pillow decodes it");
    }
}

#[test]
fn decoding_into_the_previous_image_allocates_nothing_of_its_size() {
    let Some(root) = support::imagenette() else { return };
    let photos: Vec<Vec<u8>> =
        support::imagenette_sample(&root, 3, 2).iter().map(|p| std::fs::read(p).unwrap()).collect();
    let mut dec = Decoder::new();
    let opts = DecodeOptions::default();
    let mut buf = dec.decode(&photos[0], "first", &opts).unwrap().image.into_vec();
    // Every photo twice in a row: the second decode reuses the first one's buffer as it is.
    for (i, bytes) in photos.iter().enumerate() {
        let fresh = Decoder::new().decode(bytes, "fresh", &opts).unwrap().image;
        for round in 0..2 {
            let (img, largest) = support::largest_allocation(|| {
                dec.decode_into(bytes, "reused", &opts, std::mem::take(&mut buf)).unwrap()
            });
            assert!(img.image == fresh, "photo {i}: a reused buffer changed the pixels");
            let size = img.image.data().len();
            if round == 1 || i == 0 {
                assert!(
                    largest < size / 8,
                    "photo {i}: a {largest}-byte allocation decoding {size} bytes into a buffer of that size"
                );
            }
            buf = img.image.into_vec();
        }
    }
}
