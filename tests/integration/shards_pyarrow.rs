//! Shards written by prep open unchanged in pyarrow (`ipc.open_file(memory_map(p))`) with the
//! same rows, and a shard written by pyarrow in our schema opens in our mmap reader.

use std::sync::atomic::AtomicBool;

use twoview_formats::{Encoding, Shard, ShardSet};
use twoview_pipeline::prep::{self, PrepOptions, SplitSelection, StoreEncoding};
use twoview_pipeline::resize::Fit;

use crate::support;

#[test]
fn prep_shards_round_trip_through_pyarrow() {
    let Some(imagenette) = support::imagenette() else { return };
    // A small class-folder root: 3 classes x 6 photos.
    let root = support::scratch_dir("pyarrow_root");
    for (c, path) in support::imagenette_sample(&imagenette, 3, 6).iter().enumerate() {
        let class = path.parent().unwrap().file_name().unwrap();
        std::fs::create_dir_all(root.join(class)).unwrap();
        std::fs::copy(path, root.join(class).join(format!("{c:02}.JPEG"))).unwrap();
    }
    // One wide photo (the top 150 rows of another), which `auto` stores as JPEG.
    let photo =
        twoview_pipeline::decode::open_rgb(&support::imagenette_sample(&imagenette, 4, 1)[3])
            .unwrap();
    let wide =
        twoview_pipeline::RgbImage::try_from_vec(photo.data()[..224 * 150 * 3].to_vec(), 224, 150)
            .unwrap();
    let mut jpeg = Vec::new();
    twoview_pipeline::decode::JpegEncoder::new().encode(wide.view(), 95, &mut jpeg).unwrap();
    let class = std::fs::read_dir(&root).unwrap().next().unwrap().unwrap().path();
    std::fs::write(class.join("wide.jpg"), jpeg).unwrap();
    let out = support::scratch_dir("pyarrow_shards");
    let scan = prep::scan(&root, SplitSelection::All, None).unwrap();
    // auto with a small raw limit: shorter side 64 → ~64x64x3 = 12 KB raw; limit between raw and JPEG.
    let opts = PrepOptions {
        fit: Fit::ShortSide(64),
        upscale: true,
        encoding: StoreEncoding::Auto,
        raw_max_bytes: 64 * 64 * 3,
        rows_per_shard: 7,
        batch_rows: 4,
        ..Default::default()
    };
    prep::run(&scan, &out, &opts, "test", &AtomicBool::new(false), |_| {}).unwrap();
    let set = ShardSet::open(&out, "train").unwrap();
    assert_eq!(set.len(), 19);

    let json = out.join("pyarrow.json");
    if support::venv_python(
        "shards_pyarrow.py",
        &["read".as_ref(), out.as_os_str(), json.as_os_str()],
    )
    .is_none()
    {
        return;
    }
    let seen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let mut index = 0u64;
    let (mut raw, mut jpeg) = (0, 0);
    for shard in set.shards() {
        let name = shard.path().file_name().unwrap().to_str().unwrap();
        let rows = seen[name].as_array().unwrap_or_else(|| panic!("pyarrow did not read {name}"));
        assert_eq!(rows.len() as u64, shard.num_rows());
        for r in rows {
            let ours = set.row(index).unwrap();
            index += 1;
            let sum = ours.pixels.iter().fold(0u32, |a, &b| a.wrapping_add(b as u32));
            let first: Vec<u8> = ours.pixels.iter().take(8).copied().collect();
            let expect = serde_json::json!([
                ours.key,
                ours.label,
                ours.height,
                ours.width,
                ours.encoding.code(),
                ours.pixels.len(),
                sum,
                first
            ]);
            assert_eq!(r, &expect, "row {} differs between pyarrow and twoview", index - 1);
            match ours.encoding {
                Encoding::RawRgb => raw += 1,
                Encoding::Jpeg => jpeg += 1,
            }
        }
    }
    assert_eq!(index, 19);
    assert!(raw > 0 && jpeg > 0, "auto should store both kinds here: {raw} raw, {jpeg} JPEG");

    // The other way: pyarrow writes, our mmap reader reads.
    let theirs = out.join("pyarrow-written.arrow");
    support::venv_python("shards_pyarrow.py", &["write".as_ref(), theirs.as_os_str()]).unwrap();
    let shard = Shard::open(&theirs).unwrap();
    assert_eq!((shard.num_rows(), shard.num_batches()), (3, 2));
    let r = shard.row(1).unwrap();
    assert_eq!(
        (r.key, r.label, r.height, r.width, r.encoding),
        ("b/y.JPEG", 1, 1, 4, Encoding::Jpeg)
    );
    assert_eq!(shard.row(0).unwrap().pixels, (0u8..18).collect::<Vec<_>>().as_slice());
    assert_eq!(shard.row(2).unwrap().label, -1);
}
