//! Reading a shard through a memory map: Arrow arrays whose buffers point into the map.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, UInt8Type, UInt16Type};
use arrow_array::{
    Array, Int32Array, LargeBinaryArray, RecordBatch, StringArray, UInt8Array, UInt16Array,
};
use arrow_buffer::Buffer;
use arrow_ipc::reader::{FileDecoder, read_footer_length};
use arrow_ipc::{Block, MetadataVersion};
use xxhash_rust::xxh3::Xxh3;

use crate::{
    Encoding, Error, FORMAT_VERSION, FORMAT_VERSION_KEY, Row, checksum_string, shard_schema,
};

/// One record batch of a shard, as typed columns over the map.
#[derive(Clone, Debug)]
struct Columns {
    keys: StringArray,
    labels: Int32Array,
    heights: UInt16Array,
    widths: UInt16Array,
    encodings: UInt8Array,
    pixels: LargeBinaryArray,
}

/// An opened shard file. Cheap to share (`Arc` inside); rows borrow from the memory map.
#[derive(Clone, Debug)]
pub struct Shard {
    path: PathBuf,
    map: Arc<memmap2::Mmap>,
    batches: Vec<Columns>,
    /// `starts[b]` = index of batch `b`'s first row; one extra entry = total rows.
    starts: Vec<u64>,
}

/// Bytes of a file just after opening: 6 magic + 2 padding, at least.
const MAGIC: &[u8; 6] = b"ARROW1";

impl Shard {
    /// Maps `path` and checks it is a complete twoview shard of this format version: the Arrow
    /// footer, the schema, every record batch and every row (known encoding, raw pixel length).
    /// A damaged or truncated file is an [`Error`] naming the file and batch, never a panic.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let corrupt = |reason: String| Error::Corrupt { path: path.to_owned(), reason };
        let file = File::open(path).map_err(Error::io(path))?;
        let size = file.metadata().map_err(Error::io(path))?.len();
        if size < (2 * MAGIC.len() + 10) as u64 {
            return Err(corrupt(format!(
                "{size} bytes is too short for an Arrow IPC file (truncated?)"
            )));
        }
        // SAFETY: the map is read-only. Shards are immutable once renamed into place (the writer
        // only ever writes temp files); a process truncating a shard under a reader is outside
        // the contract, as for every mmap reader.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(Error::io(path))?;
        let len = map.len();
        if len < 2 * MAGIC.len() + 10 || &map[..6] != MAGIC {
            return Err(corrupt(format!("not an Arrow IPC file ({len} bytes, no ARROW1 header)")));
        }
        let tail: [u8; 10] = map[len - 10..].try_into().expect("10 bytes");
        let footer_len = read_footer_length(tail)
            .map_err(|_| corrupt("no Arrow footer at the end (truncated?)".into()))?;
        if footer_len + 10 + 8 > len {
            return Err(corrupt(format!("footer length {footer_len} exceeds file size {len}")));
        }
        let footer_bytes = &map[len - 10 - footer_len..len - 10];
        let footer = arrow_ipc::root_as_footer(footer_bytes)
            .map_err(|e| corrupt(format!("unreadable footer: {e}")))?;
        let ipc_schema = footer.schema().ok_or_else(|| corrupt("footer has no schema".into()))?;
        let schema = arrow_ipc::convert::try_fb_to_schema(ipc_schema)
            .map_err(|source| Error::Arrow { path: path.to_owned(), batch: None, source })?;
        let version = schema.metadata().get(FORMAT_VERSION_KEY);
        if version != Some(&FORMAT_VERSION.to_string()) {
            return Err(corrupt(format!(
                "shard format version {} (metadata {FORMAT_VERSION_KEY:?}); this build reads {FORMAT_VERSION}",
                version.map_or("missing", |v| v.as_str())
            )));
        }
        let expected = shard_schema();
        if schema.fields() != expected.fields() {
            return Err(corrupt(format!("schema {:?} is not the shard schema", schema.fields())));
        }
        if footer.dictionaries().is_some_and(|d| !d.is_empty()) {
            return Err(corrupt("unexpected dictionary batches".into()));
        }
        let blocks: Vec<Block> =
            footer.recordBatches().map(|b| b.iter().copied().collect()).unwrap_or_default();
        let metadata_version = footer.version();
        if metadata_version != MetadataVersion::V5 {
            return Err(corrupt(format!(
                "Arrow metadata version {metadata_version:?}, expected V5"
            )));
        }

        let map = Arc::new(map);
        let buffer = mmap_buffer(&map);
        let decoder = FileDecoder::new(expected, metadata_version).with_require_alignment(true);
        let mut batches = Vec::with_capacity(blocks.len());
        let mut starts = vec![0u64];
        for (b, block) in blocks.iter().enumerate() {
            let columns = read_batch(&decoder, block, &buffer, len - 10 - footer_len)
                .and_then(|batch| check_batch(&batch))
                .map_err(|reason| corrupt(format!("record batch {b}: {reason}")))?;
            starts.push(starts.last().expect("non-empty") + columns.labels.len() as u64);
            batches.push(columns);
        }
        Ok(Self { path: path.to_owned(), map, batches, starts })
    }

    /// The file this shard was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows in the shard.
    pub fn num_rows(&self) -> u64 {
        *self.starts.last().expect("starts is never empty")
    }

    /// Record batches in the shard.
    pub fn num_batches(&self) -> usize {
        self.batches.len()
    }

    /// Row `i` of this shard (0-based), borrowing its key and pixels from the map.
    pub fn row(&self, i: u64) -> Result<Row<'_>, Error> {
        let rows = self.num_rows();
        if i >= rows {
            return Err(Error::RowOutOfRange { index: i, rows });
        }
        let b = self.starts.partition_point(|&s| s <= i) - 1;
        let j = (i - self.starts[b]) as usize;
        let c = &self.batches[b];
        Ok(Row {
            key: c.keys.value(j),
            label: c.labels.value(j),
            height: c.heights.value(j),
            width: c.widths.value(j),
            encoding: Encoding::from_code(c.encodings.value(j)).expect("checked at open"),
            pixels: c.pixels.value(j),
        })
    }

    /// The pixel bytes of rows `first..first + count` as one Arrow buffer pointing into the map,
    /// when they lie in one record batch (then they are contiguous); `None` otherwise.
    pub fn contiguous_pixels(&self, first: u64, count: u64) -> Option<Buffer> {
        if count == 0 || first + count > self.num_rows() {
            return None;
        }
        let b = self.starts.partition_point(|&s| s <= first) - 1;
        let j = (first - self.starts[b]) as usize;
        let c = &self.batches[b];
        if j + count as usize > c.pixels.len() {
            return None;
        }
        let offsets = c.pixels.value_offsets();
        let (start, end) = (offsets[j] as usize, offsets[j + count as usize] as usize);
        Some(c.pixels.values().slice_with_length(start, end - start))
    }

    /// Iterates over all rows in order.
    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> + '_ {
        (0..self.num_rows()).map(|i| self.row(i).expect("in range"))
    }

    /// Record batch `b` as the Arrow arrays themselves (buffers inside the map).
    pub fn record_batch(&self, b: usize) -> RecordBatch {
        let c = &self.batches[b];
        RecordBatch::try_new(
            shard_schema(),
            vec![
                Arc::new(c.keys.clone()),
                Arc::new(c.labels.clone()),
                Arc::new(c.heights.clone()),
                Arc::new(c.widths.clone()),
                Arc::new(c.encodings.clone()),
                Arc::new(c.pixels.clone()),
            ],
        )
        .expect("columns were checked against the schema at open")
    }

    /// The whole mapped file (e.g. to check that a row's pixels point inside it).
    pub fn mapped_bytes(&self) -> &[u8] {
        &self.map[..]
    }
}

/// An Arrow [`Buffer`] over the whole map, keeping the map alive as long as any array does.
fn mmap_buffer(map: &Arc<memmap2::Mmap>) -> Buffer {
    /// The map as an owner of bytes: `Bytes::from_owner` keeps it alive as long as any buffer
    /// (and so any array) made from it, without copying and without unsafe code here.
    struct Owner(Arc<memmap2::Mmap>);
    impl AsRef<[u8]> for Owner {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    Buffer::from(bytes::Bytes::from_owner(Owner(map.clone())))
}

/// Decodes one block after checking it lies inside the data region (arrow panics on slices out
/// of range, so bounds are ours to check).
fn read_batch(
    decoder: &FileDecoder,
    block: &Block,
    buffer: &Buffer,
    data_end: usize,
) -> Result<RecordBatch, String> {
    let (offset, meta, body) = (block.offset(), block.metaDataLength(), block.bodyLength());
    if offset < 8 || meta <= 0 || body < 0 || (offset + meta as i64) % 8 != 0 {
        return Err(format!("bad block (offset {offset}, metadata {meta}, body {body})"));
    }
    let (offset, meta, body) = (offset as usize, meta as usize, body as usize);
    let end = offset.checked_add(meta).and_then(|e| e.checked_add(body));
    if end.is_none_or(|e| e > data_end) {
        return Err(format!(
            "block at {offset} (+{meta}+{body} bytes) runs past the data (truncated?)"
        ));
    }
    let data = buffer.slice_with_length(offset, meta + body);
    check_buffers(&data[..meta], body)?;
    // Arrow validates offsets and UTF-8; a panic inside it on hostile bytes is turned into an
    // error rather than taking the process down.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decoder.read_record_batch(block, &data)
    }))
    .map_err(|_| "Arrow decoder panicked on these bytes".to_owned())?;
    decoded
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "empty message where a batch should be".into())
}

/// Checks that every buffer a record-batch message names lies inside its body and is 8-byte
/// aligned: arrow slices them unchecked (a panic on hostile bytes), so we check first.
fn check_buffers(meta: &[u8], body: usize) -> Result<(), String> {
    let start = if meta.starts_with(&[0xFF; 4]) { 8 } else { 4 };
    let fb = meta.get(start..).ok_or("metadata shorter than its prefix")?;
    let message = arrow_ipc::root_as_message(fb).map_err(|e| format!("unreadable message: {e}"))?;
    let batch = message.header_as_record_batch().ok_or("message is not a record batch")?;
    // Element size of each buffer of the shard schema, in order: (validity, offsets i32, bytes)
    // for key; (validity, values) for label i32, height u16, width u16, encoding u8; (validity,
    // offsets i64, bytes) for pixels.
    const ELEM: [i64; 14] = [1, 4, 1, 1, 4, 1, 2, 1, 2, 1, 1, 1, 8, 1];
    let buffers = batch.buffers().ok_or("message lists no buffers")?;
    if buffers.len() != ELEM.len() {
        return Err(format!("{} buffers, the shard schema has {}", buffers.len(), ELEM.len()));
    }
    for (i, b) in buffers.iter().enumerate() {
        let (off, len) = (b.offset(), b.length());
        let fits = off >= 0 && len >= 0 && (off as u64).saturating_add(len as u64) <= body as u64;
        if !fits || off % 8 != 0 || len % ELEM[i] != 0 {
            return Err(format!(
                "buffer {i} (offset {off}, length {len}) outside the {body}-byte body"
            ));
        }
    }
    if batch.length() < 0 {
        return Err(format!("negative row count {}", batch.length()));
    }
    Ok(())
}

/// Checks one batch's columns and rows: types, known encodings, raw pixel lengths.
fn check_batch(batch: &RecordBatch) -> Result<Columns, String> {
    let col = |i: usize| batch.column(i);
    if batch.num_columns() != 6
        || col(0).null_count() + col(1).null_count() + col(5).null_count() > 0
    {
        return Err("wrong columns or null values".into());
    }
    let c = Columns {
        keys: col(0).as_string::<i32>().clone(),
        labels: col(1).as_primitive::<Int32Type>().clone(),
        heights: col(2).as_primitive::<UInt16Type>().clone(),
        widths: col(3).as_primitive::<UInt16Type>().clone(),
        encodings: col(4).as_primitive::<UInt8Type>().clone(),
        pixels: col(5).as_binary::<i64>().clone(),
    };
    for j in 0..batch.num_rows() {
        let row = Row {
            key: c.keys.value(j),
            label: c.labels.value(j),
            height: c.heights.value(j),
            width: c.widths.value(j),
            encoding: Encoding::from_code(c.encodings.value(j)).ok_or_else(|| {
                format!("row {j}: unknown encoding code {}", c.encodings.value(j))
            })?,
            pixels: c.pixels.value(j),
        };
        row.check().map_err(|reason| format!("row {j} ({:?}): {reason}", row.key))?;
    }
    Ok(c)
}

/// Hashes a whole file with xxh3-64, in the manifest's checksum notation.
pub fn file_checksum(path: &Path) -> Result<String, Error> {
    let mut f = File::open(path).map_err(Error::io(path))?;
    let mut hasher = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(checksum_string(hasher.digest()))
}
