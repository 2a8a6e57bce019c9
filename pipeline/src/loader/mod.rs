//! The prefetching loader: two-view batches from mapped shards into a ring of reusable
//! batch buffers, handed to the consumer in order through a bounded channel.
//!
//! One producer thread walks the [`Sampler`]'s batches from a [`Cursor`]; for each batch it takes
//! a free buffer from the ring (waiting when all are in use: memory is bounded by ring size ×
//! batch size, whatever the dataset size), fills its slots in parallel on a rayon pool — each
//! worker reads its row's pixels in place from the map (raw rows are not copied; JPEG rows are
//! decoded once) and writes both views straight into the slot — and sends the [`Batch`]. Dropping
//! a `Batch` returns its buffer to the ring. The layout is `[B, 2, H, W, 3]` u8: sample `i`'s view
//! `v` is `pixels()[(2 * i + v) * H * W * 3..]`.

mod buffer;
pub mod eval;
mod sampler;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rayon::prelude::*;
use twoview_formats::{Encoding, ShardSet};

pub use buffer::{ALIGN, BatchAlloc, BatchBuffer, HeapAlloc};
pub use sampler::{Cursor, Sampler};

use crate::augment::{self, Augmenter, Photometric, Recipe, Source, ViewLog, device};
use crate::decode::{DecodeOptions, Decoder};
use crate::{Error, RgbImage, RgbMut, RgbRef};

/// What to do with a row that cannot be read or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadRowPolicy {
    /// Stop: the loader yields an error naming the shard and row.
    Fail,
    /// Use the next good row (in row order, deterministic) in its place, and count it.
    Replace,
}

/// Loader settings.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    /// Samples per batch (per rank).
    pub batch_size: usize,
    /// View height.
    pub height: u32,
    /// View width.
    pub width: u32,
    /// Seed of the permutations and the augmentation.
    pub seed: u64,
    /// This process's rank.
    pub rank: u64,
    /// Number of ranks.
    pub world: u64,
    /// Drop the incomplete last batch (and the ranks' remainder).
    pub drop_last: bool,
    /// Worker threads.
    pub threads: usize,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
    /// Where to start (a saved cursor resumes a run).
    pub start: Cursor,
    /// Stop after this epoch (exclusive); `None` runs forever.
    pub end_epoch: Option<u64>,
    /// Bad rows.
    pub on_bad_row: BadRowPolicy,
    /// Thread name prefix (Linux shows 15 characters).
    pub name: String,
    /// Photometric steps on the workers, or drawn here and applied by the trainer on its
    /// device (each batch then carries them: [`Batch::photometric`]).
    pub photometric: Photometric,
    /// JPEG rows: decode at 1/2, 1/4 or 1/8 scale (libjpeg-turbo's DCT scaling) when both of
    /// the sample's crops still span at least a view's size at that scale — the crops are
    /// drawn first, at the stored size, and mapped onto the smaller decode. Faster on rows
    /// stored large; never happens with rows stored at short side 256 and 224² views (no crop
    /// shrinks 2×). Not byte-identical to a full decode (the reference's path): off for that.
    pub dct_scaled_decode: bool,
}

impl LoaderConfig {
    /// Defaults for `batch_size` views of `size`×`size`: all cores but one, 4 batches ahead,
    /// drop_last, one rank, fail on bad rows.
    pub fn new(batch_size: usize, size: u32) -> Self {
        let threads =
            std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1));
        Self {
            batch_size,
            height: size,
            width: size,
            seed: 0,
            rank: 0,
            world: 1,
            drop_last: true,
            threads,
            prefetch: 4,
            start: Cursor::default(),
            end_epoch: None,
            on_bad_row: BadRowPolicy::Fail,
            name: "twoview-load".into(),
            photometric: Photometric::Here,
            dct_scaled_decode: true,
        }
    }
}

/// Where a batch's pixels live.
enum Storage {
    /// A ring buffer, returned to the ring on drop.
    Ring(BatchBuffer),
    /// A slice of a mapped view shard (offline views): no copy at all.
    Mapped(twoview_formats::Buffer),
}

/// One batch of two-view samples. Dropping it returns its buffer to the loader's ring.
pub struct Batch {
    buffer: Option<Storage>,
    ring: Sender<BatchBuffer>,
    /// Where this batch is in the stream.
    pub cursor: Cursor,
    /// The cursor to save to resume *after* this batch.
    pub next_cursor: Cursor,
    /// Samples in the batch (the last batch of an epoch may be short without drop_last).
    pub len: usize,
    /// Class labels, one per sample.
    pub labels: Vec<i32>,
    /// Global row indices, one per sample (a replaced bad row shows its replacement).
    pub rows: Vec<u64>,
    /// Bad rows replaced in this batch (policy `Replace`).
    pub replaced: u32,
    /// With [`Photometric::Deferred`]: what each sample's deferred steps drew,
    /// `[len][`[`device::SAMPLE_FLOATS`]`]` ([`device`] has the layout); empty otherwise.
    pub photometric: Vec<f32>,
    view_bytes: usize,
}

impl Batch {
    /// The batch's pixels, `[len, 2, H, W, 3]` u8 (a prefix of the buffer).
    pub fn pixels(&self) -> &[u8] {
        let all = match self.buffer.as_ref().expect("present until drop") {
            Storage::Ring(b) => b.as_slice(),
            Storage::Mapped(b) => b.as_slice(),
        };
        &all[..self.len * 2 * self.view_bytes]
    }

    /// The batch's pixels, writable: a ring buffer is this batch's alone until it is dropped
    /// (`None` for a slice of a mapped view shard, which is read-only).
    pub fn pixels_mut(&mut self) -> Option<&mut [u8]> {
        let n = self.len * 2 * self.view_bytes;
        match self.buffer.as_mut().expect("present until drop") {
            Storage::Ring(b) => Some(&mut b.as_mut_slice()[..n]),
            Storage::Mapped(_) => None,
        }
    }

    /// True when the pixels are a slice of a mapped view shard (no host copy was made).
    pub fn is_mapped(&self) -> bool {
        matches!(self.buffer, Some(Storage::Mapped(_)))
    }

    /// View `v` (0 or 1) of sample `i`.
    pub fn view(&self, i: usize, v: usize) -> &[u8] {
        let at = (2 * i + v) * self.view_bytes;
        &self.pixels()[at..at + self.view_bytes]
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(Storage::Ring(b)) = self.buffer.take() {
            let _ = self.ring.try_send(b); // the loader is gone: the buffer is simply freed
        }
    }
}

/// Consumer-side counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoaderStats {
    /// Batches handed out.
    pub batches: u64,
    /// Total time the consumer waited for batches.
    pub wait: Duration,
    /// Wait for the most recent batch.
    pub last_wait: Duration,
    /// Bad rows replaced so far.
    pub replaced: u64,
}

/// The loader. Iterate it (or call [`Loader::next_batch`]); drop it to stop all its threads.
pub struct Loader {
    rx: Option<Receiver<Result<Batch, Error>>>,
    stop: Arc<AtomicBool>,
    producer: Option<JoinHandle<()>>,
    stats: LoaderStats,
    sampler: Sampler,
    ring_size: usize,
}

/// What [`Loader::poll_batch`] found.
pub enum Poll {
    /// The next batch, or the error that ended the stream.
    Ready(Result<Batch, Error>),
    /// No batch yet.
    Pending,
    /// The stream has ended (`end_epoch` reached, or after an error).
    Ended,
}

/// Per-worker tools, one per pool thread.
struct Worker {
    aug: Augmenter,
    decoder: Decoder,
    decoded: Option<RgbImage>,
}

impl Loader {
    /// Starts loading `set` with `recipe`; buffers come from `alloc`.
    pub fn new(
        set: ShardSet,
        recipe: Recipe,
        cfg: LoaderConfig,
        alloc: Arc<dyn BatchAlloc>,
    ) -> Result<Self, Error> {
        let what = || format!("{} split {:?}", set.dir().display(), set.split());
        let sampler = sampler_for(&cfg, set.len(), cfg.drop_last, what)?;
        if cfg.photometric == Photometric::Deferred {
            device::check(&recipe)?;
        }
        let view_bytes = cfg.height as usize * cfg.width as usize * 3;
        let (ring_tx, ring_rx) = ring(&cfg, view_bytes, alloc)?;
        let name = cfg.name.clone();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads.max(1))
            .thread_name(move |i| format!("{name}{i}"))
            .build()
            .map_err(|e| Error::Loader { reason: format!("worker pool: {e}") })?;
        let name = cfg.name.clone();
        let prefetch = cfg.prefetch;
        spawn(&name, prefetch, sampler, move |tx, stop| {
            produce(set, recipe, cfg, sampler, pool, ring_tx, ring_rx, tx, stop, view_bytes)
        })
    }

    /// Serves offline views (`prep-shards --views K`) of `split` in `dir`: epoch e comes from
    /// variant e mod K in its stored order, batch g of the epoch being rows g·B..(g+1)·B (rank r
    /// takes g = r, r + world, …). A batch inside one record batch is a slice of the map (no
    /// copy); one that crosses a record batch is copied into a ring buffer. `cfg.height/width`
    /// must be the view size the views were made at; `threads` and the recipe are unused.
    pub fn from_views(
        dir: &std::path::Path,
        split: &str,
        cfg: LoaderConfig,
    ) -> Result<Self, Error> {
        let invalid = |reason: String| Error::Loader { reason };
        let manifest = twoview_formats::Manifest::load(dir)?;
        let vs = crate::prep::ViewsSettings::recorded(&manifest)
            .filter(|v| v.split == split && v.k > 0)
            .ok_or_else(|| {
                invalid(format!(
                    "{} has no offline views of split {split:?} (prep-shards --views K)",
                    dir.display()
                ))
            })?;
        if (cfg.height, cfg.width) != (vs.size, vs.size) {
            return Err(invalid(format!(
                "views were made at {0}x{0}, asked for {1}x{2}",
                vs.size, cfg.width, cfg.height
            )));
        }
        let sets = (0..vs.k)
            .map(|k| ShardSet::open(dir, &crate::prep::views_split(split, k)))
            .collect::<Result<Vec<_>, _>>()?;
        let what = || format!("{} offline views of split {split:?}", dir.display());
        // Views are served in their stored order, whole batches only.
        let sampler = sampler_for(&cfg, sets[0].len(), true, what)?;
        let view_bytes = cfg.height as usize * cfg.width as usize * 3;
        let (ring_tx, ring_rx) = ring(&cfg, view_bytes, Arc::new(HeapAlloc))?;
        let per_epoch = sampler.batches_per_epoch();
        let name = cfg.name.clone();
        let prefetch = cfg.prefetch;
        spawn(&name, prefetch, sampler, move |tx, stop| {
            let b = cfg.batch_size as u64;
            let mut cursor = cfg.start;
            while !stop.load(Ordering::Relaxed) && cfg.end_epoch.is_none_or(|e| cursor.epoch < e) {
                let set = &sets[(cursor.epoch % sets.len() as u64) as usize];
                let first = (cursor.batch * cfg.world + cfg.rank) * b;
                let next_cursor = if cursor.batch + 1 >= per_epoch {
                    Cursor { epoch: cursor.epoch + 1, batch: 0 }
                } else {
                    Cursor { epoch: cursor.epoch, batch: cursor.batch + 1 }
                };
                let item = (|| -> Result<Batch, Error> {
                    let mut labels = Vec::with_capacity(b as usize);
                    for i in first..first + b {
                        let r = set.row(i)?;
                        if (r.height as u32, r.width as u32, r.encoding)
                            != (2 * cfg.height, cfg.width, Encoding::RawRgb)
                        {
                            return Err(Error::BadRow {
                                row: format!("{} row {i} ({})", set.split(), r.key),
                                reason: format!(
                                    "not a raw {}x{} view pair",
                                    cfg.width,
                                    2 * cfg.height
                                ),
                            });
                        }
                        labels.push(r.label);
                    }
                    let storage = match set.contiguous_pixels(first, b) {
                        Some(buf) => Storage::Mapped(buf),
                        None => {
                            let mut buf = take_buffer(&ring_rx, &stop).ok_or(Error::Interrupted)?;
                            for (k, i) in (first..first + b).enumerate() {
                                let px = set.row(i)?.pixels;
                                buf.as_mut_slice()[k * px.len()..(k + 1) * px.len()]
                                    .copy_from_slice(px);
                            }
                            Storage::Ring(buf)
                        }
                    };
                    Ok(Batch {
                        buffer: Some(storage),
                        ring: ring_tx.clone(),
                        cursor,
                        next_cursor,
                        len: b as usize,
                        labels,
                        rows: (first..first + b).collect(),
                        replaced: 0,
                        photometric: Vec::new(),
                        view_bytes,
                    })
                })();
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    return;
                }
                cursor = next_cursor;
            }
        })
    }

    /// The next batch (`None` after `end_epoch`), timing how long the caller waited.
    pub fn next_batch(&mut self) -> Option<Result<Batch, Error>> {
        let t = Instant::now();
        let got = self.rx.as_ref()?.recv().ok()?;
        self.count(&got, t.elapsed());
        Some(got)
    }

    /// The consumer-side counters for an item received after waiting `waited`.
    fn count(&mut self, got: &Result<Batch, Error>, waited: Duration) {
        self.stats.wait += waited;
        self.stats.last_wait = waited;
        if let Ok(b) = got {
            self.stats.batches += 1;
            self.stats.replaced += b.replaced as u64;
        }
    }

    /// The next batch if one arrives within `timeout`; a caller that must stay responsive
    /// (to a signal, or to notice it holds every ring buffer itself) polls in short steps.
    pub fn poll_batch(&mut self, timeout: Duration) -> Poll {
        let Some(rx) = self.rx.as_ref() else { return Poll::Ended };
        let t = Instant::now();
        match rx.recv_timeout(timeout) {
            Ok(got) => {
                self.count(&got, t.elapsed());
                Poll::Ready(got)
            }
            Err(RecvTimeoutError::Timeout) => {
                self.stats.wait += t.elapsed();
                Poll::Pending
            }
            Err(RecvTimeoutError::Disconnected) => Poll::Ended,
        }
    }

    /// Buffers in the ring: batches alive at once (queued, being filled, or held by the
    /// consumer) never exceed it; a consumer holding this many waits forever for the next.
    pub fn ring_size(&self) -> usize {
        self.ring_size
    }

    /// Consumer-side counters so far.
    pub fn stats(&self) -> LoaderStats {
        self.stats
    }

    /// The sampler (batches per epoch, rows per rank).
    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }
}

impl Iterator for Loader {
    type Item = Result<Batch, Error>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        drop(self.rx.take()); // unblocks a producer waiting to send
        if let Some(h) = self.producer.take() {
            let _ = h.join();
        }
    }
}

/// The checks both loaders make on `cfg` for `rows` rows of `what`, and their sampler.
fn sampler_for(
    cfg: &LoaderConfig,
    rows: u64,
    drop_last: bool,
    what: impl Fn() -> String,
) -> Result<Sampler, Error> {
    let invalid = |reason: String| Error::Loader { reason };
    if rows == 0 {
        return Err(invalid(format!("{} has no rows", what())));
    }
    if cfg.batch_size == 0
        || cfg.world == 0
        || cfg.rank >= cfg.world
        || cfg.height == 0
        || cfg.width == 0
    {
        return Err(invalid(format!(
            "batch_size {}, rank {} of {}, views {}x{}: need batch_size > 0, rank < world, views > 0",
            cfg.batch_size, cfg.rank, cfg.world, cfg.width, cfg.height
        )));
    }
    let sampler = Sampler {
        rows,
        seed: cfg.seed,
        rank: cfg.rank,
        world: cfg.world,
        batch_size: cfg.batch_size as u64,
        drop_last,
    };
    if sampler.batches_per_epoch() == 0 {
        return Err(invalid(format!(
            "{}: {rows} rows over {} ranks make no full batch of {} (drop_last)",
            what(),
            cfg.world,
            cfg.batch_size
        )));
    }
    Ok(sampler)
}

/// Starts the producer thread `name` running `body`, which sends batches into a channel of
/// `prefetch` places until the loader is dropped (`stop` set) or the data ends.
fn spawn(
    name: &str,
    prefetch: usize,
    sampler: Sampler,
    body: impl FnOnce(Sender<Result<Batch, Error>>, Arc<AtomicBool>) + Send + 'static,
) -> Result<Loader, Error> {
    let (tx, rx) = crossbeam_channel::bounded(prefetch.max(1));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || body(tx, stop))
            .map_err(|e| Error::Loader { reason: format!("cannot start the loader thread: {e}") })?
    };
    Ok(Loader {
        rx: Some(rx),
        stop,
        producer: Some(producer),
        stats: LoaderStats::default(),
        sampler,
        ring_size: ring_slots(prefetch),
    })
}

/// The ring's size: `prefetch` batches queued + one being filled + one held by the consumer.
fn ring_slots(prefetch: usize) -> usize {
    prefetch.max(1) + 2
}

/// The ring of [`ring_slots`] buffers.
#[allow(clippy::type_complexity)]
fn ring(
    cfg: &LoaderConfig,
    view_bytes: usize,
    alloc: Arc<dyn BatchAlloc>,
) -> Result<(Sender<BatchBuffer>, Receiver<BatchBuffer>), Error> {
    let size = ring_slots(cfg.prefetch);
    let (tx, rx) = crossbeam_channel::bounded(size);
    for _ in 0..size {
        let b = BatchBuffer::new(cfg.batch_size * 2 * view_bytes, alloc.clone())
            .ok_or_else(|| Error::Loader { reason: "cannot allocate batch buffers".into() })?;
        tx.send(b).expect("ring has room");
    }
    Ok((tx, rx))
}

/// A free buffer from the ring, waiting for the consumer to drop one; `None` once stopped.
fn take_buffer(ring: &Receiver<BatchBuffer>, stop: &AtomicBool) -> Option<BatchBuffer> {
    loop {
        match ring.recv_timeout(Duration::from_millis(20)) {
            Ok(b) => return Some(b),
            Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => continue,
            Err(_) => return None,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn produce(
    set: ShardSet,
    recipe: Recipe,
    cfg: LoaderConfig,
    sampler: Sampler,
    pool: rayon::ThreadPool,
    ring_tx: Sender<BatchBuffer>,
    ring_rx: Receiver<BatchBuffer>,
    tx: Sender<Result<Batch, Error>>,
    stop: Arc<AtomicBool>,
    view_bytes: usize,
) {
    let workers: Vec<Mutex<Worker>> = (0..pool.current_num_threads())
        .map(|_| {
            Mutex::new(Worker { aug: Augmenter::new(), decoder: Decoder::new(), decoded: None })
        })
        .collect();
    let mut cursor = cfg.start;
    let mut epoch_rows: Option<(u64, Vec<u64>)> = None;
    while !stop.load(Ordering::Relaxed) && cfg.end_epoch.is_none_or(|e| cursor.epoch < e) {
        if epoch_rows.as_ref().is_none_or(|(e, _)| *e != cursor.epoch) {
            epoch_rows = Some((cursor.epoch, sampler.epoch_rows(cursor.epoch)));
        }
        let rows =
            sampler.batch_rows(&epoch_rows.as_ref().expect("set above").1, cursor.batch).to_vec();
        let Some(mut buffer) = take_buffer(&ring_rx, &stop) else { return };
        let pair_bytes = 2 * view_bytes;
        let filled: Result<Vec<Filled>, Error> = pool.install(|| {
            buffer.as_mut_slice()[..rows.len() * pair_bytes]
                .par_chunks_mut(pair_bytes)
                .zip(rows.par_iter())
                .map(|(slot, &row)| {
                    let me = rayon::current_thread_index().expect("inside the pool");
                    let mut w = workers[me].lock().expect("a worker never panics holding its lock");
                    fill_slot(&mut w, &set, &recipe, &cfg, cursor.epoch, row, slot, view_bytes)
                })
                .collect()
        });
        let item = filled.map(|samples| Batch {
            len: samples.len(),
            labels: samples.iter().map(|s| s.label).collect(),
            rows: samples.iter().map(|s| s.row).collect(),
            replaced: samples.iter().filter(|s| s.replaced).count() as u32,
            photometric: deferred(&cfg, &samples),
            buffer: Some(Storage::Ring(buffer)),
            ring: ring_tx.clone(),
            cursor,
            next_cursor: sampler.next(cursor),
            view_bytes,
        });
        let failed = item.is_err();
        if tx.send(item).is_err() || failed {
            return;
        }
        cursor = sampler.next(cursor);
    }
}

/// One filled slot.
struct Filled {
    label: i32,
    /// The row used (a replacement's, if replaced).
    row: u64,
    replaced: bool,
    logs: [ViewLog; 2],
}

/// The batch's deferred photometric parameters (empty unless deferred).
fn deferred(cfg: &LoaderConfig, samples: &[Filled]) -> Vec<f32> {
    if cfg.photometric != Photometric::Deferred {
        return Vec::new();
    }
    let mut out = vec![0.0; samples.len() * device::SAMPLE_FLOATS];
    for (s, o) in samples.iter().zip(out.chunks_exact_mut(device::SAMPLE_FLOATS)) {
        device::encode(&s.logs, o);
    }
    out
}

/// Both views of `row` into `slot`; under `Replace`, bad rows give way to the next good one.
#[allow(clippy::too_many_arguments)]
fn fill_slot(
    w: &mut Worker,
    set: &ShardSet,
    recipe: &Recipe,
    cfg: &LoaderConfig,
    epoch: u64,
    row: u64,
    slot: &mut [u8],
    view_bytes: usize,
) -> Result<Filled, Error> {
    let tries = if cfg.on_bad_row == BadRowPolicy::Replace { 16.min(set.len()) } else { 1 };
    let mut first_err = None;
    for k in 0..tries {
        let r = (row + k) % set.len();
        match two_views_of(w, set, recipe, cfg, epoch, r, slot, view_bytes) {
            Ok((label, logs)) => {
                return Ok(Filled { label, row: r, replaced: k > 0, logs });
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.expect("at least one try"))
}

#[allow(clippy::too_many_arguments)]
fn two_views_of(
    w: &mut Worker,
    set: &ShardSet,
    recipe: &Recipe,
    cfg: &LoaderConfig,
    epoch: u64,
    row: u64,
    slot: &mut [u8],
    view_bytes: usize,
) -> Result<(i32, [ViewLog; 2]), Error> {
    let r = set.row(row)?;
    let where_ = || {
        let (s, i) = set.locate(row).expect("row exists");
        format!("{}, row {i} ({})", set.shards()[s].path().display(), r.key)
    };
    let bad = |reason: String| Error::BadRow { row: where_(), reason };
    let src = match r.encoding {
        Encoding::RawRgb => Source::full(
            RgbRef::try_new(r.pixels, r.width as u32, r.height as u32)
                .map_err(|e| bad(e.to_string()))?,
        ),
        Encoding::Jpeg => {
            let full = (r.width as u32, r.height as u32);
            let key = (cfg.seed, epoch, row);
            // The smallest DCT scale both crops allow (they are the first draws of the views'
            // streams, so drawing them here changes nothing of the views).
            let eighths = if cfg.dct_scaled_decode {
                augment::dct_scale_for(&augment::crops(recipe, full, key), (cfg.width, cfg.height))
            } else {
                8
            };
            let mut opts = DecodeOptions::default();
            if eighths < 8 {
                // The decoder picks the smallest scale that keeps these sides: this one.
                let scaled = |d: u32| crate::decode::dct_scaled(d, u32::from(eighths));
                let (a, b) = (scaled(full.0), scaled(full.1));
                opts.dct_scale_floor = Some((a.min(b), a.max(b)));
            }
            // The previous row's allocation: same-sized rows decode without allocating.
            let reuse = w.decoded.take().map(RgbImage::into_vec).unwrap_or_default();
            let d = w
                .decoder
                .decode_into(r.pixels, r.key, &opts, reuse)
                .map_err(|e| bad(e.to_string()))?;
            if d.full_size != full {
                let (fw, fh) = d.full_size;
                return Err(bad(format!(
                    "the JPEG is {fw}x{fh}, the row says {}x{}",
                    r.width, r.height
                )));
            }
            let scale = d.scale_eighths;
            w.decoded = Some(d.image);
            let image = w.decoded.as_ref().expect("just set").view();
            Source::scaled(image, full, scale).map_err(|e| bad(e.to_string()))?
        }
    };
    let (a, b) = slot.split_at_mut(view_bytes);
    let mut a = RgbMut::try_new(a, cfg.width, cfg.height)?;
    let mut b = RgbMut::try_new(b, cfg.width, cfg.height)?;
    let logs = w
        .aug
        .two_views_from(recipe, src, (cfg.seed, epoch, row), &mut a, &mut b, cfg.photometric)
        .map_err(|e| bad(e.to_string()))?;
    Ok((r.label, logs))
}

#[cfg(test)]
mod tests;
