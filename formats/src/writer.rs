//! Writing one shard: record batches of a fixed row count into a temp file, hashed as written,
//! fsynced and renamed into place only when complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, Int32Builder, LargeBinaryBuilder, StringBuilder, UInt8Builder, UInt16Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_ipc::writer::FileWriter;
use xxhash_rust::xxh3::Xxh3;

use crate::{Error, Row, ShardInfo, checksum_string, shard_schema};

/// A `Write` that hashes (xxh3-64) and counts every byte on its way to the file.
struct HashingWriter {
    inner: BufWriter<File>,
    hasher: Xxh3,
    bytes: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Columns of the record batch being filled.
struct Columns {
    keys: StringBuilder,
    labels: Int32Builder,
    heights: UInt16Builder,
    widths: UInt16Builder,
    encodings: UInt8Builder,
    pixels: LargeBinaryBuilder,
}

impl Columns {
    fn new() -> Self {
        Self {
            keys: StringBuilder::new(),
            labels: Int32Builder::new(),
            heights: UInt16Builder::new(),
            widths: UInt16Builder::new(),
            encodings: UInt8Builder::new(),
            pixels: LargeBinaryBuilder::new(),
        }
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.keys.finish()),
            Arc::new(self.labels.finish()),
            Arc::new(self.heights.finish()),
            Arc::new(self.widths.finish()),
            Arc::new(self.encodings.finish()),
            Arc::new(self.pixels.finish()),
        ]
    }
}

/// Writes one shard file. Rows go to `.<name>.tmp` beside the final path; [`ShardWriter::finish`]
/// ends the Arrow file, fsyncs it, renames it into place and fsyncs the folder, so the final name
/// only ever holds a complete shard. Dropping an unfinished writer removes the temp file.
pub struct ShardWriter {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<FileWriter<HashingWriter>>,
    columns: Columns,
    batch_rows: usize,
    rows: u64,
}

impl ShardWriter {
    /// Starts the shard that will end up at `path`, cutting a record batch every `batch_rows`
    /// rows (the last batch may be shorter).
    pub fn create(path: &Path, batch_rows: usize) -> Result<Self, Error> {
        assert!(batch_rows > 0, "batch_rows must be positive");
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("shard");
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        let file = File::create(&tmp).map_err(Error::io(&tmp))?;
        let sink = HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            hasher: Xxh3::new(),
            bytes: 0,
        };
        let writer = FileWriter::try_new(sink, &shard_schema()).map_err(|source| Error::Arrow {
            path: tmp.clone(),
            batch: None,
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            tmp,
            writer: Some(writer),
            columns: Columns::new(),
            batch_rows,
            rows: 0,
        })
    }

    /// Appends one row. Raw RGB pixels must be `height * width * 3` bytes.
    pub fn push(&mut self, row: &Row<'_>) -> Result<(), Error> {
        row.check().map_err(|reason| Error::InvalidRow { key: row.key.to_owned(), reason })?;
        let c = &mut self.columns;
        c.keys.append_value(row.key);
        c.labels.append_value(row.label);
        c.heights.append_value(row.height);
        c.widths.append_value(row.width);
        c.encodings.append_value(row.encoding.code());
        c.pixels.append_value(row.pixels);
        self.rows += 1;
        if c.len() >= self.batch_rows {
            self.flush_batch()?;
        }
        Ok(())
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn flush_batch(&mut self) -> Result<(), Error> {
        if self.columns.len() == 0 {
            return Ok(());
        }
        let arrow = |source| Error::Arrow { path: self.tmp.clone(), batch: None, source };
        let batch = RecordBatch::try_new(shard_schema(), self.columns.finish()).map_err(arrow)?;
        let writer = self.writer.as_mut().expect("writer is present until finish");
        writer.write(&batch).map_err(|source| Error::Arrow {
            path: self.tmp.clone(),
            batch: None,
            source,
        })
    }

    /// Ends the shard: writes the footer, fsyncs, renames into place, fsyncs the folder.
    /// Returns the file name (not the path), row count, size and checksum.
    pub fn finish(mut self) -> Result<ShardInfo, Error> {
        self.flush_batch()?;
        let mut writer = self.writer.take().expect("writer is present until finish");
        writer.finish().map_err(|source| Error::Arrow {
            path: self.tmp.clone(),
            batch: None,
            source,
        })?;
        let sink = writer.into_inner().map_err(|source| Error::Arrow {
            path: self.tmp.clone(),
            batch: None,
            source,
        })?;
        let HashingWriter { inner, hasher, bytes } = sink;
        let file = inner
            .into_inner()
            .map_err(|e| Error::Io { path: self.tmp.clone(), source: e.into_error() })?;
        file.sync_all().map_err(Error::io(&self.tmp))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(Error::io(&self.path))?;
        sync_dir(&self.path)?;
        let file = self.path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        Ok(ShardInfo { file, rows: self.rows, bytes, checksum: checksum_string(hasher.digest()) })
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        if self.writer.is_some() {
            // Unfinished: never leave a half-written temp file behind.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Fsyncs the folder holding `path`, so a rename into it survives a power cut.
pub(crate) fn sync_dir(path: &Path) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io(dir))
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f = File::create(&tmp).map_err(Error::io(&tmp))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(Error::io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(Error::io(path))?;
    sync_dir(path)
}
