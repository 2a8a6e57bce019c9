//! Batch buffers: 64-byte-aligned byte blocks from an allocation hook (plain memory by default;
//! the trainer can hand in pinned memory from libtorch without this crate linking it).

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Arc;

/// Alignment of every batch buffer.
pub const ALIGN: usize = 64;

/// Allocates and frees batch buffers. Implement it to supply pinned (page-locked) memory.
///
/// # Safety
///
/// As `GlobalAlloc`'s contract, for this trait's two calls: a `Some(ptr)` from `alloc(bytes)`
/// must point to at least `bytes` bytes, aligned to at least [`ALIGN`] (checked), valid for
/// reads and writes from any thread, not used by anything else, and staying valid until it is
/// passed to `free` (with the same `bytes`). The memory need not be initialised
/// ([`BatchBuffer`] zeroes it). `free` must accept every pointer `alloc` returned, once.
pub unsafe trait BatchAlloc: Send + Sync {
    /// `bytes` bytes aligned to at least [`ALIGN`]; `None` if out of memory.
    fn alloc(&self, bytes: usize) -> Option<NonNull<u8>>;
    /// Frees what `alloc` returned for the same `bytes`.
    ///
    /// # Safety
    /// `ptr` came from this allocator's `alloc(bytes)` and is not used afterwards.
    unsafe fn free(&self, ptr: NonNull<u8>, bytes: usize);
}

/// The default: the global allocator, 64-byte aligned.
#[derive(Debug, Default)]
pub struct HeapAlloc;

// SAFETY: the global allocator's block of `bytes` (at least 1) with ALIGN alignment, owned by
// the caller until `free` returns it with the same layout.
unsafe impl BatchAlloc for HeapAlloc {
    fn alloc(&self, bytes: usize) -> Option<NonNull<u8>> {
        let layout = Layout::from_size_align(bytes.max(1), ALIGN).ok()?;
        // SAFETY: the layout has non-zero size.
        NonNull::new(unsafe { std::alloc::alloc(layout) })
    }

    unsafe fn free(&self, ptr: NonNull<u8>, bytes: usize) {
        let layout = Layout::from_size_align(bytes.max(1), ALIGN).expect("valid at alloc");
        // SAFETY: the caller guarantees `ptr` came from `alloc(bytes)`, i.e. this layout.
        unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) }
    }
}

/// One batch buffer, owned; freed through its allocator on drop.
pub struct BatchBuffer {
    ptr: NonNull<u8>,
    len: usize,
    alloc: Arc<dyn BatchAlloc>,
}

// SAFETY: the buffer is plain bytes owned by this value; access goes through &/&mut self.
unsafe impl Send for BatchBuffer {}
// SAFETY: shared access is read-only.
unsafe impl Sync for BatchBuffer {}

impl BatchBuffer {
    /// Allocates `len` bytes from `alloc`, zeroed.
    pub fn new(len: usize, alloc: Arc<dyn BatchAlloc>) -> Option<Self> {
        let ptr = alloc.alloc(len)?;
        assert_eq!(
            ptr.as_ptr() as usize % ALIGN,
            0,
            "BatchAlloc returned memory aligned below {ALIGN}"
        );
        // SAFETY: `BatchAlloc`'s contract: `len` writable bytes, ours alone. Zeroing makes
        // them initialised whatever the allocator gave (pinned memory is not).
        unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, len) };
        Some(Self { ptr, len, alloc })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` holds `len` initialised bytes (zeroed in `new`, or written) owned by
        // self (`BatchAlloc`'s contract).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for BatchBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc.alloc(len)` and is not used after this.
        unsafe { self.alloc.free(self.ptr, self.len) }
    }
}
