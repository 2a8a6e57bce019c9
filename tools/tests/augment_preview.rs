//! `twoview augment-preview` on real photos writes a sheet of the expected size.

use std::path::Path;
use std::process::Command;

#[test]
fn preview_sheet_of_real_images() {
    let data =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/imagenette224/val");
    let data = if data.is_dir() {
        data
    } else {
        assert!(std::env::var_os("CI").is_none(), "CI must have {}", data.display());
        eprintln!("SKIP: {} is absent", data.display());
        return;
    };
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("augment-preview.png");
    let _ = std::fs::remove_file(&out);
    let run = Command::new(env!("CARGO_BIN_EXE_twoview"))
        .args(["augment-preview", "--recipe", "mocov3_vit", "--n", "6", "--size", "128", "--out"])
        .arg(&out)
        .arg(&data)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("6 rows") && stdout.contains("row 5: "), "{stdout}");
    // 3 columns and 6 rows of 128 px tiles with 4 px gaps, read back from the PNG header.
    let png = std::fs::read(&out).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let be = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap());
    assert_eq!((be(16), be(20)), (3 * 132 + 4, 6 * 132 + 4));
}

#[test]
fn preview_with_an_unknown_recipe_names_it() {
    let run = Command::new(env!("CARGO_BIN_EXE_twoview"))
        .args(["augment-preview", "--recipe", "nope", "--out", "/tmp/x.png", "."])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("nope") && stderr.contains("mocov3_vit"), "{stderr}");
}
