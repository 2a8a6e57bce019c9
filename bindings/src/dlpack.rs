//! DLPack export: a host buffer handed to a consumer (`torch.from_dlpack`, `numpy.from_dlpack`)
//! as a legacy `dltensor` capsule, the buffer's owner kept alive until the consumer's tensor is
//! freed (the DLPack deleter) or, if no consumer took it, until the capsule dies.
//! ABI: dlpack.h v0.8 (`DLManagedTensor`), which every consumer still accepts.

use std::ffi::{CStr, c_void};

use pyo3::ffi;
use pyo3::prelude::*;

#[repr(C)]
struct DLDevice {
    device_type: i32,
    device_id: i32,
}

#[repr(C)]
struct DLDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

#[repr(C)]
struct DLTensor {
    data: *mut c_void,
    device: DLDevice,
    ndim: i32,
    dtype: DLDataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

#[repr(C)]
struct DLManagedTensor {
    dl_tensor: DLTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

/// `kDLCPU`: host memory (pinned host memory is host memory to every consumer).
pub const DEVICE_CPU: i32 = 1;
const DTYPE_UINT: u8 = 1;
const NAME: &CStr = c"dltensor";

/// The managed tensor, its shape and strides, and what keeps the bytes alive: boxed, so the
/// pointers inside stay put until the deleter frees it.
struct Owner<T> {
    managed: DLManagedTensor,
    shape: Vec<i64>,
    strides: Vec<i64>,
    _keep: T,
}

unsafe extern "C" fn delete<T>(m: *mut DLManagedTensor) {
    // SAFETY: `m` is the `managed` field of a leaked `Box<Owner<T>>` whose address is in its
    // `manager_ctx`; DLPack calls the deleter once (the capsule destructor only calls it when no
    // consumer renamed the capsule, i.e. took ownership).
    unsafe {
        let owner = (*m).manager_ctx as *mut Owner<T>;
        drop(Box::from_raw(owner));
    }
}

unsafe extern "C" fn capsule_destructor(capsule: *mut ffi::PyObject) {
    // SAFETY: called by Python with the GIL held on a capsule made by `export`. A consumer
    // renames the capsule to `used_dltensor` when it takes ownership; only an unconsumed one
    // still carries our name, and then its pointer is our `DLManagedTensor`.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, NAME.as_ptr()) == 1 {
            let m = ffi::PyCapsule_GetPointer(capsule, NAME.as_ptr()) as *mut DLManagedTensor;
            if let Some(d) = (*m).deleter {
                d(m);
            }
        }
    }
}

/// A C-contiguous u8 tensor of `shape` over `data`, as a DLPack capsule that owns `keep`.
///
/// # Safety
///
/// `data` must point to `shape.product()` bytes, readable and writable by the consumer and by
/// nothing else, that stay valid as long as `keep` is alive.
pub unsafe fn export<'py, T: Send + 'static>(
    py: Python<'py>,
    keep: T,
    data: *mut u8,
    shape: &[i64],
) -> PyResult<Bound<'py, PyAny>> {
    let mut strides = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    let owner = Box::into_raw(Box::new(Owner {
        managed: DLManagedTensor {
            dl_tensor: DLTensor {
                data: data.cast(),
                device: DLDevice { device_type: DEVICE_CPU, device_id: 0 },
                ndim: shape.len() as i32,
                dtype: DLDataType { code: DTYPE_UINT, bits: 8, lanes: 1 },
                shape: std::ptr::null_mut(),
                strides: std::ptr::null_mut(),
                byte_offset: 0,
            },
            manager_ctx: std::ptr::null_mut(),
            deleter: Some(delete::<T>),
        },
        shape: shape.to_vec(),
        strides,
        _keep: keep,
    }));
    // SAFETY: `owner` was just leaked and is only reached through the capsule from here on;
    // the vectors' heap blocks do not move while the box lives.
    unsafe {
        (*owner).managed.manager_ctx = owner.cast();
        (*owner).managed.dl_tensor.shape = (*owner).shape.as_mut_ptr();
        (*owner).managed.dl_tensor.strides = (*owner).strides.as_mut_ptr();
        let m: *mut DLManagedTensor = &raw mut (*owner).managed;
        let capsule = ffi::PyCapsule_New(m.cast(), NAME.as_ptr(), Some(capsule_destructor));
        if capsule.is_null() {
            delete::<T>(m);
            return Err(PyErr::fetch(py));
        }
        Ok(Bound::from_owned_ptr(py, capsule))
    }
}
