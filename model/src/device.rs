//! Choosing the device, and making libtorch's CUDA backend visible.
//!
//! rustc links with `--as-needed`, and no Rust symbol refers to `libtorch_cuda.so`, so the
//! linker drops it and libtorch never registers its CUDA backend (tch-rs #980):
//! `tch::Cuda::is_available()` is then false even on a GPU machine. [`load_cuda_backend`] opens
//! the library with `RTLD_NOW | RTLD_GLOBAL` at start-up, which registers the backend. On a
//! CPU-only machine (or a CPU build of libtorch) the library is absent and the call reports why.
//! (A build with the NCCL backend, `dist::NCCL_BUILD`, links `libtorch_cuda.so` directly; the
//! call then finds it loaded.)

use std::ffi::{CStr, CString};
use std::sync::OnceLock;

use tch::Device;

use crate::Error;

/// Loads `libtorch_cuda.so` once per process. `Ok` when it is loaded (which does not yet mean
/// that a GPU is present: ask [`tch::Cuda::is_available`]); `Err` with the loader's message when
/// the library cannot be opened. Later calls return the first call's result.
pub fn load_cuda_backend() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let name = CString::new("libtorch_cuda.so").expect("no NUL in a literal");
            // SAFETY: `name` is a valid NUL-terminated string; dlopen has no other precondition.
            // The handle is never closed: the backend must stay registered for the process.
            let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if handle.is_null() {
                // SAFETY: dlerror returns NULL or a NUL-terminated string owned by libc.
                let msg = unsafe { libc::dlerror() };
                let reason = if msg.is_null() {
                    "dlopen failed".to_owned()
                } else {
                    // SAFETY: non-null, NUL-terminated, valid until the next dl* call.
                    unsafe { CStr::from_ptr(msg) }.to_string_lossy().into_owned()
                };
                Err(reason)
            } else {
                Ok(())
            }
        })
        .clone()
}

/// Parses `cpu`, `cuda` or `cuda:N` into a device, loading the CUDA backend first and checking
/// that the device exists. Every binary calls this before it makes a tensor.
pub fn init(spec: &str) -> Result<Device, Error> {
    // Always try: a CPU run on a GPU machine should still see the devices in `info`.
    let loaded = load_cuda_backend();
    let index = match spec {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        _ => spec
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| Error::UnknownDevice { given: spec.to_owned() })?,
    };
    if let Err(reason) = loaded {
        let reason = format!(
            "cannot load libtorch_cuda.so ({reason}); put the lib folder of a CUDA build of \
             torch 2.11.0 on LD_LIBRARY_PATH"
        );
        return Err(Error::CudaUnavailable { given: spec.to_owned(), reason });
    }
    if !tch::Cuda::is_available() {
        return Err(Error::CudaUnavailable {
            given: spec.to_owned(),
            reason: "libtorch_cuda.so is loaded but libtorch finds no CUDA device or driver"
                .to_owned(),
        });
    }
    let count = tch::Cuda::device_count() as usize;
    if index >= count {
        return Err(Error::NoSuchCudaDevice { given: spec.to_owned(), count });
    }
    Ok(Device::Cuda(index))
}

#[cfg(test)]
mod tests;
