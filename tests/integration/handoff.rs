//! The hand-off between crates: image bytes held by an Arrow array (formats' schema) become a u8
//! tensor (model's libtorch) that points at the same memory, with no copy.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, Int32Array, LargeBinaryArray, RecordBatch, StringArray};
use arrow_array::{UInt8Array, UInt16Array};
use twoview_formats::{Encoding, shard_schema};

#[test]
fn raw_pixels_in_an_arrow_row_wrap_as_a_tensor_without_copy() {
    let (h, w) = (4u16, 5u16);
    let pixels: Vec<u8> = (0..h as usize * w as usize * 3).map(|i| (i * 7 % 251) as u8).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["cls/img.JPEG"])),
        Arc::new(Int32Array::from(vec![3])),
        Arc::new(UInt16Array::from(vec![h])),
        Arc::new(UInt16Array::from(vec![w])),
        Arc::new(UInt8Array::from(vec![Encoding::RawRgb.code()])),
        Arc::new(LargeBinaryArray::from(vec![pixels.as_slice()])),
    ];
    let batch = RecordBatch::try_new(shard_schema(), columns).unwrap();
    let bytes = batch.column(5).as_binary::<i64>().value(0);

    let _device = twoview_model::device::init("cpu").unwrap();
    // SAFETY: `bytes` outlives `t` (both end with this scope) and is HWC u8 of exactly this shape.
    let t = unsafe {
        tch::Tensor::from_blob(
            bytes.as_ptr(),
            &[h as i64, w as i64, 3],
            &[w as i64 * 3, 3, 1],
            tch::Kind::Uint8,
            tch::Device::Cpu,
        )
    };
    assert_eq!(t.data_ptr() as *const u8, bytes.as_ptr(), "the tensor must alias the Arrow buffer");
    assert_eq!(t.size(), vec![h as i64, w as i64, 3]);
    // Pixel (y=2, x=3), green channel, read through libtorch equals the source byte.
    let idx = (2 * w as usize + 3) * 3 + 1;
    assert_eq!(t.int64_value(&[2, 3, 1]), pixels[idx] as i64);
    // And a reduction over the whole view matches the bytes' sum.
    let sum: i64 = pixels.iter().map(|&b| b as i64).sum();
    assert_eq!(t.sum(tch::Kind::Int64).int64_value(&[]), sum);
}
