use std::io::Cursor;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, UInt8Type, UInt16Type};
use arrow_array::{
    ArrayRef, Int32Array, LargeBinaryArray, RecordBatch, StringArray, UInt8Array, UInt16Array,
};
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;

use super::*;

/// Smoke test of the Arrow wiring: two rows through an IPC file in memory and back.
#[test]
fn ipc_file_round_trip_keeps_rows_and_version() {
    let raw = vec![7u8; 2 * 3 * 3];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["n01440764/a.JPEG", "n02102040/b.JPEG"])),
        Arc::new(Int32Array::from(vec![0, -1])),
        Arc::new(UInt16Array::from(vec![2, 1])),
        Arc::new(UInt16Array::from(vec![3, 4])),
        Arc::new(UInt8Array::from(vec![Encoding::RawRgb.code(), Encoding::Jpeg.code()])),
        Arc::new(LargeBinaryArray::from(vec![raw.as_slice(), b"\xff\xd8jpeg".as_slice()])),
    ];
    let batch = RecordBatch::try_new(shard_schema(), columns).unwrap();

    let mut file = Vec::new();
    let mut writer = FileWriter::try_new(&mut file, &shard_schema()).unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    drop(writer);

    let reader = FileReader::try_new(Cursor::new(file), None).unwrap();
    assert_eq!(reader.schema().metadata()[FORMAT_VERSION_KEY], "1");
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    assert_eq!(batches, vec![batch.clone()]);

    let back = &batches[0];
    assert_eq!(back.column(1).as_primitive::<Int32Type>().values(), &[0, -1]);
    assert_eq!(back.column(2).as_primitive::<UInt16Type>().values(), &[2, 1]);
    assert_eq!(back.column(4).as_primitive::<UInt8Type>().value(1), 1);
    assert_eq!(back.column(5).as_binary::<i64>().value(0), raw.as_slice());
}

#[test]
fn encoding_codes_round_trip() {
    for e in [Encoding::RawRgb, Encoding::Jpeg] {
        assert_eq!(Encoding::from_code(e.code()), Some(e));
    }
    assert_eq!(Encoding::from_code(2), None);
}
