//! `NativeLoader` and `NativeBatch`: the prefetching loader for Python. A batch's pixels leave
//! as a DLPack capsule over its ring buffer (no copy); the buffer returns to the ring when the
//! consumer's tensor is freed. The Python `twoview.Loader` wraps these.

use std::collections::HashMap;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyBufferError, PyTypeError};
use pyo3::prelude::*;
use twoview_formats::ShardSet;
use twoview_pipeline::loader::{
    ALIGN, BadRowPolicy, Batch, BatchAlloc, Cursor, HeapAlloc, Loader, LoaderConfig, Poll,
};

use crate::augment::Recipe;
use crate::{LoaderError, dlpack, to_py};

/// Batches handed to Python and not yet freed; dropping a `Live` counts one back.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a DLPack capsule keeps alive: the count first (fields drop in order), so the count
/// never shows fewer live batches than hold buffers.
struct Exported {
    _live: Live,
    _batch: Batch,
}

/// Batch buffers from a Python callable returning CPU `torch.uint8` tensors (the Python side
/// passes `torch.empty(n, dtype=torch.uint8, pin_memory=True)`): pinned memory from torch's
/// own caching host allocator, freed by dropping the tensor.
struct TorchAlloc {
    make: Py<PyAny>,
    held: Mutex<HashMap<usize, Py<PyAny>>>,
}

impl TorchAlloc {
    /// A contiguous CPU u8 tensor of at least `bytes` bytes from `make`, and its data address.
    fn tensor(&self, py: Python<'_>, bytes: usize) -> PyResult<(Py<PyAny>, usize)> {
        let t = self.make.call1(py, (bytes,))?;
        let tb = t.bind(py);
        let tensor_type = py.import("torch")?.getattr("Tensor")?;
        let ok = tb.is_instance(&tensor_type)?
            && tb.getattr("device")?.getattr("type")?.extract::<String>()? == "cpu"
            && tb.call_method0("is_contiguous")?.extract::<bool>()?
            && tb.getattr("dtype")?.eq(py.import("torch")?.getattr("uint8")?)?
            && tb.getattr("nbytes")?.extract::<usize>()? >= bytes;
        if !ok {
            return Err(PyTypeError::new_err(format!(
                "the buffer allocator must return a contiguous CPU torch.uint8 tensor of {bytes} bytes"
            )));
        }
        let ptr = tb.call_method0("data_ptr")?.extract::<usize>()?;
        Ok((t, ptr))
    }
}

// SAFETY: every buffer is the data of a contiguous CPU u8 tensor of `bytes + ALIGN` bytes
// (checked: type, device, layout, dtype, size), started at its first ALIGN-aligned byte so
// `bytes` remain; the tensor is kept in `held` -- referenced by nothing else we hand out --
// until `free` removes it.
unsafe impl BatchAlloc for TorchAlloc {
    fn alloc(&self, bytes: usize) -> Option<NonNull<u8>> {
        Python::attach(|py| match self.tensor(py, bytes + ALIGN) {
            Ok((t, ptr)) => {
                let aligned = ptr.next_multiple_of(ALIGN);
                self.held.lock().expect("not poisoned").insert(aligned, t);
                NonNull::new(aligned as *mut u8)
            }
            Err(e) => {
                e.restore(py); // raised by the constructor that asked for the buffer
                None
            }
        })
    }

    unsafe fn free(&self, ptr: NonNull<u8>, _bytes: usize) {
        let t = self.held.lock().expect("not poisoned").remove(&(ptr.as_ptr() as usize));
        if let Some(t) = t {
            Python::attach(move |_| drop(t));
        }
    }
}

/// The loader behind `twoview.Loader`.
#[pyclass(module = "twoview._native")]
pub struct NativeLoader {
    inner: Option<Loader>,
    live: Arc<AtomicUsize>,
    view: (u32, u32),
}

fn bad_row_policy(s: &str) -> PyResult<BadRowPolicy> {
    match s {
        "fail" => Ok(BadRowPolicy::Fail),
        "replace" => Ok(BadRowPolicy::Replace),
        _ => Err(LoaderError::new_err(format!("on_bad_row={s:?}: use \"fail\" or \"replace\""))),
    }
}

#[pymethods]
impl NativeLoader {
    #[new]
    #[pyo3(signature = (shards, split, recipe, batch_size, height, width, seed, rank, world_size,
        threads, prefetch, drop_last, epoch, batch, end_epoch, on_bad_row, alloc,
        dct_scaled_decode=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        shards: PathBuf,
        split: &str,
        recipe: &Recipe,
        batch_size: usize,
        height: u32,
        width: u32,
        seed: u64,
        rank: u64,
        world_size: u64,
        threads: Option<usize>,
        prefetch: usize,
        drop_last: bool,
        epoch: u64,
        batch: u64,
        end_epoch: Option<u64>,
        on_bad_row: &str,
        alloc: Option<Py<PyAny>>,
        dct_scaled_decode: bool,
    ) -> PyResult<Self> {
        let set = ShardSet::open(&shards, split).map_err(|e| to_py(e.into()))?;
        let mut cfg = LoaderConfig::new(batch_size, height);
        cfg.width = width;
        cfg.seed = seed;
        cfg.rank = rank;
        cfg.world = world_size;
        if let Some(t) = threads {
            cfg.threads = t.max(1);
        }
        cfg.prefetch = prefetch.max(1);
        cfg.drop_last = drop_last;
        cfg.start = Cursor { epoch, batch };
        cfg.end_epoch = end_epoch;
        cfg.on_bad_row = bad_row_policy(on_bad_row)?;
        cfg.dct_scaled_decode = dct_scaled_decode;
        cfg.name = "twoview-py".into();
        let alloc: Arc<dyn BatchAlloc> = match alloc {
            Some(make) => Arc::new(TorchAlloc { make, held: Mutex::new(HashMap::new()) }),
            None => Arc::new(HeapAlloc),
        };
        let loader = Loader::new(set, recipe.inner.clone(), cfg, alloc).map_err(|e| {
            // An allocator's own error (e.g. torch cannot pin without CUDA) says why.
            PyErr::take(py).map_or_else(
                || to_py(e),
                |cause| {
                    let err =
                        LoaderError::new_err(format!("cannot allocate batch buffers: {cause}"));
                    err.set_cause(py, Some(cause));
                    err
                },
            )
        })?;
        let per_epoch = loader.sampler().batches_per_epoch();
        if batch >= per_epoch {
            let inner = Some(loader);
            py.detach(move || drop(inner));
            return Err(LoaderError::new_err(format!(
                "cursor batch {batch} is past the end of an epoch ({per_epoch} batches)"
            )));
        }
        Ok(Self { inner: Some(loader), live: Arc::new(AtomicUsize::new(0)), view: (height, width) })
    }

    /// The next batch, or `None` once `end_epoch` is reached. Waits with the GIL released,
    /// answers Ctrl-C, and raises instead of waiting forever when every ring buffer is held by
    /// batches the caller keeps alive.
    fn next(&mut self, py: Python<'_>) -> PyResult<Option<NativeBatch>> {
        loop {
            let loader = self.inner.as_mut().ok_or_else(closed)?;
            let ring = loader.ring_size();
            let poll = py.detach(|| loader.poll_batch(Duration::from_millis(50)));
            match poll {
                Poll::Ready(Ok(batch)) => {
                    self.live.fetch_add(1, Ordering::SeqCst);
                    let live = Live(self.live.clone());
                    return Ok(Some(NativeBatch { batch: Some((live, batch)), view: self.view }));
                }
                Poll::Ready(Err(e)) => return Err(to_py(e)),
                Poll::Ended => return Ok(None),
                Poll::Pending => {
                    py.check_signals()?;
                    if self.live.load(Ordering::SeqCst) >= ring {
                        return Err(LoaderError::new_err(format!(
                            "all {ring} batch buffers are held by batches still alive (tensors \
                             kept from earlier batches): free them (del, or .clone() what you \
                             keep) or raise prefetch (ring = prefetch + 2)"
                        )));
                    }
                }
            }
        }
    }

    /// Stops the loader's threads (also done when it is garbage-collected).
    fn close(&mut self, py: Python<'_>) {
        let inner = self.inner.take();
        py.detach(move || drop(inner));
    }

    /// Batches per epoch on this rank.
    #[getter]
    fn batches_per_epoch(&self) -> PyResult<u64> {
        Ok(self.inner.as_ref().ok_or_else(closed)?.sampler().batches_per_epoch())
    }

    /// Rows this rank sees per epoch.
    #[getter]
    fn rows_per_rank(&self) -> PyResult<u64> {
        Ok(self.inner.as_ref().ok_or_else(closed)?.sampler().rows_per_rank())
    }

    /// Buffers in the ring (prefetch + 2): at most this many batches alive at once.
    #[getter]
    fn ring_size(&self) -> PyResult<usize> {
        Ok(self.inner.as_ref().ok_or_else(closed)?.ring_size())
    }

    /// Batches handed out and not yet freed.
    #[getter]
    fn live_batches(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// (batches handed out, seconds the caller waited, bad rows replaced).
    fn stats(&self) -> PyResult<(u64, f64, u64)> {
        let s = self.inner.as_ref().ok_or_else(closed)?.stats();
        Ok((s.batches, s.wait.as_secs_f64(), s.replaced))
    }
}

impl Drop for NativeLoader {
    fn drop(&mut self) {
        // Joining the producer may free buffers that need the GIL (TorchAlloc): never hold it.
        if let Some(inner) = self.inner.take() {
            Python::attach(|py| py.detach(move || drop(inner)));
        }
    }
}

fn closed() -> PyErr {
    LoaderError::new_err("the loader is closed")
}

fn exported() -> PyErr {
    PyBufferError::new_err("the batch's pixels were exported already (__dlpack__)")
}

/// One batch: `[len, 2, H, W, 3]` uint8 pixels exported once through `__dlpack__`, and its
/// labels, rows and cursors.
#[pyclass(module = "twoview._native")]
pub struct NativeBatch {
    batch: Option<(Live, Batch)>,
    view: (u32, u32),
}

impl NativeBatch {
    fn get(&self) -> PyResult<&Batch> {
        self.batch.as_ref().map(|b| &b.1).ok_or_else(exported)
    }
}

#[pymethods]
impl NativeBatch {
    /// DLPack export of the pixels (once): the buffer goes back to the ring when the consumer's
    /// tensor is freed. `copy=True` is refused: the point is not to copy.
    #[pyo3(signature = (*, stream = None, max_version = None, dl_device = None, copy = None))]
    fn __dlpack__<'py>(
        &mut self,
        py: Python<'py>,
        stream: Option<Py<PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = (stream, max_version);
        if dl_device.is_some_and(|d| d != (dlpack::DEVICE_CPU, 0)) {
            return Err(PyBufferError::new_err("a twoview batch lives in host memory (kDLCPU)"));
        }
        if copy == Some(true) {
            return Err(PyBufferError::new_err("twoview batches are exported without a copy"));
        }
        let (live, mut batch) = self.batch.take().ok_or_else(exported)?;
        let (h, w) = self.view;
        let shape = [batch.len as i64, 2, h as i64, w as i64, 3];
        let Some(px) = batch.pixels_mut() else {
            return Err(PyBufferError::new_err("a mapped batch is read-only"));
        };
        let data = px.as_mut_ptr();
        let keep = Exported { _live: live, _batch: batch };
        // SAFETY: `data` is the batch's ring buffer prefix of len·2·H·W·3 bytes (the shape's
        // product), this batch's alone (the ring hands it out again only after the batch is
        // dropped, which `keep` prevents until the consumer's deleter runs).
        unsafe { dlpack::export(py, keep, data, &shape) }
    }

    fn __dlpack_device__(&self) -> (i32, i32) {
        (dlpack::DEVICE_CPU, 0)
    }

    /// Samples in the batch.
    fn __len__(&self) -> PyResult<usize> {
        Ok(self.get()?.len)
    }

    /// Class labels, one per sample.
    #[getter]
    fn labels(&self) -> PyResult<Vec<i32>> {
        Ok(self.get()?.labels.clone())
    }

    /// Global row indices, one per sample (a replaced bad row shows its replacement).
    #[getter]
    fn rows(&self) -> PyResult<Vec<u64>> {
        Ok(self.get()?.rows.clone())
    }

    /// (epoch, batch) of this batch.
    #[getter]
    fn cursor(&self) -> PyResult<(u64, u64)> {
        let c = self.get()?.cursor;
        Ok((c.epoch, c.batch))
    }

    /// (epoch, batch) to resume after this batch.
    #[getter]
    fn next_cursor(&self) -> PyResult<(u64, u64)> {
        let c = self.get()?.next_cursor;
        Ok((c.epoch, c.batch))
    }

    /// Bad rows replaced in this batch.
    #[getter]
    fn replaced(&self) -> PyResult<u32> {
        Ok(self.get()?.replaced)
    }

    /// Address of the first pixel (tests check that the tensor is this memory).
    #[getter]
    fn data_ptr(&self) -> PyResult<usize> {
        Ok(self.get()?.pixels().as_ptr() as usize)
    }
}
