//! The hand-off of a loader's u8 batch to the device, and when its host buffer may go back.
//!
//! The contract: [`Uploader::upload`] takes ownership of a host batch (any `AsRef<[u8]>`, the
//! loader's ring buffer in practice) and gives a tensor on the device. The host batch is
//! released (dropped, so the loader can refill its buffer) only when nothing can still read it:
//!
//! - CPU: the tensor *is* the host memory (no copy). Every op of a step runs before
//!   [`crate::train::Trainer::step`] returns, so [`Uploader::stepped`] releases everything
//!   handed out so far.
//! - CUDA: the tensor is a non-blocking copy from (pinned) host memory on the current stream,
//!   and a CUDA event is recorded right after it. The host batch stays here until that event
//!   has completed -- checked without blocking after each step, and waited for only when more
//!   than `max_in_flight` batches are held (which bounds how far the host runs ahead and keeps
//!   the loader's ring from running dry). Nothing else (a loss read, a sync) is relied on.

use std::collections::VecDeque;

use tch::{Device, Kind, Tensor};

use crate::Error;
use crate::shim::CudaEvent;

/// A host batch the device may still be reading.
struct InFlight {
    host: Box<dyn AsRef<[u8]>>,
    /// Complete once the copy that reads `host` has run (CUDA); none on CPU.
    copied: Option<CudaEvent>,
}

/// Moves host batches to one device and releases them when their copies are done.
pub struct Uploader {
    device: Device,
    max_in_flight: usize,
    held: VecDeque<InFlight>,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("device", &self.device)
            .field("held", &self.held.len())
            .finish()
    }
}

impl Uploader {
    /// Hand-offs to `device`, holding at most `max_in_flight` (≥ 1) batches whose copies may
    /// not have finished.
    pub fn new(device: Device, max_in_flight: usize) -> Self {
        Self { device, max_in_flight: max_in_flight.max(1), held: VecDeque::new() }
    }

    /// The batch `host` (exactly the bytes of a `shape` u8 tensor, C order) as a tensor on the
    /// device. `host` is kept until its copy has completed (see the module's contract).
    pub fn upload(&mut self, host: Box<dyn AsRef<[u8]>>, shape: &[i64]) -> Result<Tensor, Error> {
        let bytes = (*host).as_ref();
        let want: i64 = shape.iter().product();
        if shape.iter().any(|&d| d < 0) || want as usize != bytes.len() {
            return Err(Error::Libtorch {
                op: "upload",
                message: format!("{} bytes are not a u8 tensor of shape {shape:?}", bytes.len()),
            });
        }
        // SAFETY: `bytes` holds exactly the elements of `shape` (checked above), contiguous. It
        // lives in `host`, which this uploader keeps -- unmoved on the heap -- until nothing can
        // read it: on CPU until `stepped` (the step that reads the tensor has run by then); on
        // CUDA until the event recorded after the copy has completed. The tensor is read only.
        let on_host =
            unsafe { Tensor::from_blob(bytes.as_ptr(), shape, &[], Kind::Uint8, Device::Cpu) };
        let (tensor, copied) = match self.device {
            Device::Cpu => (on_host, None),
            Device::Cuda(index) => {
                let t = on_host.to_device_(self.device, Kind::Uint8, true, false);
                (t, Some(CudaEvent::record(index)?))
            }
            other => {
                return Err(Error::Libtorch {
                    op: "upload",
                    message: format!("no hand-off to {other:?}"),
                });
            }
        };
        self.held.push_back(InFlight { host, copied });
        Ok(tensor)
    }

    /// After a step was enqueued: releases every host batch whose copy has completed (on CPU,
    /// all of them), and waits for the oldest while more than `max_in_flight` are held.
    pub fn stepped(&mut self) -> Result<(), Error> {
        while let Some(first) = self.held.front() {
            let done = match &first.copied {
                None => true,
                Some(ev) if self.held.len() > self.max_in_flight => {
                    ev.wait()?;
                    true
                }
                Some(ev) => ev.is_done()?,
            };
            if !done {
                break;
            }
            drop(self.held.pop_front().map(|f| f.host));
        }
        Ok(())
    }

    /// Host batches still held.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        // A batch must not go back to the loader while a copy may read it.
        for f in &self.held {
            if let Some(ev) = &f.copied {
                let _ = ev.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counted(Vec<u8>, std::rc::Rc<std::cell::Cell<usize>>);
    impl AsRef<[u8]> for Counted {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.set(self.1.get() + 1);
        }
    }

    #[test]
    fn cpu_hand_off_is_the_host_memory_and_is_released_after_the_step() {
        let released = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut up = Uploader::new(Device::Cpu, 2);
        let bytes: Vec<u8> = (0..24).collect();
        let ptr = bytes.as_ptr() as usize;
        let t = up.upload(Box::new(Counted(bytes, released.clone())), &[2, 3, 4]).unwrap();
        assert_eq!(t.data_ptr() as usize, ptr, "no copy on the CPU");
        assert_eq!(t.int64_value(&[1, 2, 3]), 23);
        assert_eq!((up.held(), released.get()), (1, 0), "held until the step ran");
        up.stepped().unwrap();
        assert_eq!((up.held(), released.get()), (0, 1));
        let err = up.upload(Box::new(vec![0u8; 5]), &[2, 3]).unwrap_err().to_string();
        assert!(err.contains("5 bytes are not a u8 tensor of shape [2, 3]"), "{err}");
    }
}
