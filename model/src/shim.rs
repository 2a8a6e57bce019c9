//! Safe wrappers over the C++ shim (`csrc/shim.cpp`): the libtorch calls tch 0.24 does not
//! expose — multi-tensor optimizer ops, pinned host memory from libtorch's allocator, CUDA
//! events on the current stream, and a counter of dispatched ATen ops.

use std::ffi::{CStr, c_char, c_int, c_void};

use tch::Tensor;
use torch_sys::C_tensor;

use crate::Error;

unsafe extern "C" {
    fn tv_free_error(e: *mut c_char);
    fn tv_fused_adamw_(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        exp_avgs: *const *mut C_tensor,
        exp_avg_sqs: *const *mut C_tensor,
        n: usize,
        step: *mut C_tensor,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        found_inf: *mut C_tensor,
    ) -> *mut c_char;
    fn tv_foreach_lerp_(
        this: *const *mut C_tensor,
        end: *const *mut C_tensor,
        n: usize,
        weight: f64,
    ) -> *mut c_char;
    fn tv_foreach_copy_(
        this: *const *mut C_tensor,
        src: *const *mut C_tensor,
        n: usize,
    ) -> *mut c_char;
    fn tv_foreach_norm(ts: *const *mut C_tensor, n: usize, out: *mut *mut C_tensor) -> *mut c_char;
    fn tv_foreach_zero_(this: *const *mut C_tensor, n: usize) -> *mut c_char;
    fn tv_foreach_mul_(this: *const *mut C_tensor, n: usize, factor: *mut C_tensor) -> *mut c_char;
    fn tv_empty_pinned(bytes: i64, out: *mut *mut C_tensor) -> *mut c_char;
    fn tv_event_record(index: i64, out: *mut *mut c_void) -> *mut c_char;
    fn tv_event_query(ev: *mut c_void, done: *mut c_int) -> *mut c_char;
    fn tv_event_synchronize(ev: *mut c_void) -> *mut c_char;
    fn tv_event_free(ev: *mut c_void);
    fn tv_op_counter_start() -> *mut c_char;
    fn tv_op_counter_stop(count: *mut i64, reads: *mut i64) -> *mut c_char;
}

/// The shim's result: `None`, or the message it carried (taken and freed).
pub(crate) fn take_error(e: *mut c_char) -> Option<String> {
    if e.is_null() {
        return None;
    }
    // SAFETY: a non-null result is a NUL-terminated string the shim strdup'ed; it is read once
    // and freed once, by the shim's own free.
    unsafe {
        let m = CStr::from_ptr(e).to_string_lossy().into_owned();
        tv_free_error(e);
        Some(m)
    }
}

fn check(op: &'static str, e: *mut c_char) -> Result<(), Error> {
    match take_error(e) {
        None => Ok(()),
        Some(message) => Err(Error::Libtorch { op, message }),
    }
}

/// Pointers to the tensors, for a call that only lives as long as `ts`.
pub(crate) fn ptrs(ts: &[&Tensor]) -> Vec<*mut C_tensor> {
    ts.iter().map(|t| t.as_ptr() as *mut C_tensor).collect()
}

fn same_len(op: &'static str, lens: &[usize]) -> Result<(), Error> {
    if lens.windows(2).all(|w| w[0] == w[1]) {
        return Ok(());
    }
    Err(Error::Libtorch { op, message: format!("tensor lists of different lengths {lens:?}") })
}

/// AdamW's hyper-parameters for one call of [`fused_adamw_`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamwStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
}

/// `torch.optim.AdamW(fused=True)`'s kernel over all `params` at once. `step` is the shared
/// float step count after this step (the caller increments it); `found_inf`, a one-element
/// float tensor, skips the whole update when it holds 1.
pub fn fused_adamw_(
    params: &[&Tensor],
    grads: &[&Tensor],
    exp_avgs: &[&Tensor],
    exp_avg_sqs: &[&Tensor],
    step: &Tensor,
    h: AdamwStep,
    found_inf: Option<&Tensor>,
) -> Result<(), Error> {
    let op = "_fused_adamw_";
    same_len(op, &[params.len(), grads.len(), exp_avgs.len(), exp_avg_sqs.len()])?;
    let (p, g, m, v) = (ptrs(params), ptrs(grads), ptrs(exp_avgs), ptrs(exp_avg_sqs));
    let inf = found_inf.map_or(std::ptr::null_mut(), |t| t.as_ptr() as *mut C_tensor);
    // SAFETY: four arrays of `n` live tensor pointers (checked equal above), a live step
    // tensor, and a live or null found_inf; the shim copies the handles and checks shapes,
    // dtypes and devices itself (throwing, which comes back as an error).
    let e = unsafe {
        tv_fused_adamw_(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            p.len(),
            step.as_ptr() as *mut C_tensor,
            h.lr,
            h.beta1,
            h.beta2,
            h.weight_decay,
            h.eps,
            inf,
        )
    };
    check(op, e)
}

/// `this[i] += weight · (end[i] − this[i])` for all i (as the other list ops: nothing for no
/// tensors).
pub fn foreach_lerp_(this: &[&Tensor], end: &[&Tensor], weight: f64) -> Result<(), Error> {
    if this.is_empty() {
        return Ok(()); // libtorch refuses empty lists; nothing to do
    }
    same_len("_foreach_lerp_", &[this.len(), end.len()])?;
    let (a, b) = (ptrs(this), ptrs(end));
    // SAFETY: two arrays of the same number of live tensor pointers.
    check("_foreach_lerp_", unsafe { tv_foreach_lerp_(a.as_ptr(), b.as_ptr(), a.len(), weight) })
}

/// `this[i].copy_(src[i])` for all i.
pub fn foreach_copy_(this: &[&Tensor], src: &[&Tensor]) -> Result<(), Error> {
    if this.is_empty() {
        return Ok(()); // libtorch refuses empty lists; nothing to do
    }
    same_len("_foreach_copy_", &[this.len(), src.len()])?;
    let (a, b) = (ptrs(this), ptrs(src));
    // SAFETY: two arrays of the same number of live tensor pointers.
    check("_foreach_copy_", unsafe { tv_foreach_copy_(a.as_ptr(), b.as_ptr(), a.len()) })
}

/// `this[i].zero_()` for all i.
pub fn foreach_zero_(this: &[&Tensor]) -> Result<(), Error> {
    if this.is_empty() {
        return Ok(()); // libtorch refuses empty lists; nothing to do
    }
    let a = ptrs(this);
    // SAFETY: an array of live tensor pointers.
    check("_foreach_zero_", unsafe { tv_foreach_zero_(a.as_ptr(), a.len()) })
}

/// `this[i] *= factor` (a one-element tensor on their device) for all i.
pub fn foreach_mul_(this: &[&Tensor], factor: &Tensor) -> Result<(), Error> {
    if this.is_empty() {
        return Ok(()); // libtorch refuses empty lists; nothing to do
    }
    let a = ptrs(this);
    // SAFETY: an array of live tensor pointers and a live factor tensor.
    check("_foreach_mul_", unsafe {
        tv_foreach_mul_(a.as_ptr(), a.len(), factor.as_ptr() as *mut C_tensor)
    })
}

/// The L2 norm of each tensor, as one fp32 tensor `[n]` on their device (no host sync).
pub fn foreach_norm(ts: &[&Tensor]) -> Result<Tensor, Error> {
    let a = ptrs(ts);
    let mut out: *mut C_tensor = std::ptr::null_mut();
    // SAFETY: an array of live tensor pointers; on success `out` is a tensor the shim
    // allocated with `new`, owned from here by the returned Tensor (tch frees it with delete).
    unsafe {
        check("_foreach_norm", tv_foreach_norm(a.as_ptr(), a.len(), &mut out))?;
        Ok(Tensor::from_ptr(out))
    }
}

/// `bytes` bytes of page-locked host memory from libtorch's pinned allocator: an error when
/// it cannot pin (no CUDA), never pageable memory.
pub fn empty_pinned(bytes: usize) -> Result<Tensor, Error> {
    let mut out: *mut C_tensor = std::ptr::null_mut();
    let n = i64::try_from(bytes)
        .map_err(|_| Error::Libtorch { op: "empty_pinned", message: format!("{bytes} bytes") })?;
    // SAFETY: on success `out` is a tensor the shim allocated with `new`, owned from here by
    // the returned Tensor.
    unsafe {
        check("empty(pin_memory=True)", tv_empty_pinned(n, &mut out))?;
        Ok(Tensor::from_ptr(out))
    }
}

/// A CUDA event recorded on the current stream of a device: complete once the work queued
/// before it (a host-to-device copy, say) has run.
#[derive(Debug)]
pub struct CudaEvent {
    ptr: *mut c_void,
}

impl CudaEvent {
    /// Records an event on device `index`'s current stream.
    pub fn record(index: usize) -> Result<Self, Error> {
        let mut ptr = std::ptr::null_mut();
        // SAFETY: on success `ptr` is a c10::Event the shim allocated, owned by the result.
        check("record event", unsafe { tv_event_record(index as i64, &mut ptr) })?;
        Ok(Self { ptr })
    }

    /// Whether the work before the event has completed (never blocks).
    pub fn is_done(&self) -> Result<bool, Error> {
        let mut done: c_int = 0;
        // SAFETY: `ptr` is this event's, alive until drop.
        check("query event", unsafe { tv_event_query(self.ptr, &mut done) })?;
        Ok(done != 0)
    }

    /// Blocks until the work before the event has completed.
    pub fn wait(&self) -> Result<(), Error> {
        // SAFETY: `ptr` is this event's, alive until drop.
        check("synchronize event", unsafe { tv_event_synchronize(self.ptr) })
    }
}

impl Drop for CudaEvent {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from tv_event_record and is freed exactly once.
        unsafe { tv_event_free(self.ptr) }
    }
}

// SAFETY: a c10::Event is a handle to a CUDA event, usable from any thread (CUDA events are
// not thread-bound); the shim's calls on it are the CUDA runtime's thread-safe ones.
unsafe impl Send for CudaEvent {}

/// What [`count_ops`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCount {
    /// Top-level ATen ops dispatched (a `_foreach_` op is one, whatever it runs inside): on
    /// CUDA, the launches up to the few chunks each multi-tensor op splits into.
    pub ops: i64,
    /// Of those, the ones that copy a value to the host (`item`, `_local_scalar_dense`,
    /// `is_nonzero`): each is a host sync on CUDA. Reads inside an op are the backend's (the
    /// CPU fused AdamW reads its step count per tensor; the CUDA kernel reads it on the
    /// device) and are not counted.
    pub host_reads: i64,
}

/// Counts what this thread dispatches to ATen while `f` runs.
pub fn count_ops<R>(f: impl FnOnce() -> R) -> Result<(R, OpCount), Error> {
    /// Stops the counter even when `f` panics.
    struct Running;
    impl Drop for Running {
        fn drop(&mut self) {
            let (mut n, mut r) = (0i64, 0i64);
            // SAFETY: valid out-pointers; the counter runs (started below).
            let _ = take_error(unsafe { tv_op_counter_stop(&mut n, &mut r) });
        }
    }
    // SAFETY: no arguments; the shim refuses a second start on the same thread.
    check("op counter", unsafe { tv_op_counter_start() })?;
    let running = Running;
    let r = f();
    std::mem::forget(running);
    let (mut ops, mut host_reads) = (0i64, 0i64);
    // SAFETY: valid out-pointers.
    check("op counter", unsafe { tv_op_counter_stop(&mut ops, &mut host_reads) })?;
    Ok((r, OpCount { ops, host_reads }))
}

#[cfg(test)]
mod tests;
