//! twoview-model: the MoCo v3 Vision Transformer on libtorch (through tch), with its heads,
//! loss, schedules, optimizers, checkpoints and k-NN evaluation. Tensors in, tensors out: this
//! crate never reads shards.
//!
//! Binaries call [`device::init`] first: it loads libtorch's CUDA library, which the linker
//! drops (`--as-needed`), so one binary serves CPU-only and GPU machines.
//!
//! ```
//! let device = twoview_model::device::init("cpu").unwrap();
//! let x = tch::Tensor::ones([2, 3], (tch::Kind::Float, device));
//! assert_eq!(x.sum(tch::Kind::Float).double_value(&[]), 6.0);
//! ```

pub mod amp;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod dist;
mod error;
pub mod export;
pub mod handoff;
pub mod knn;
pub mod metrics;
pub mod moco;
pub mod optim;
pub mod photometric;
pub mod probe;
pub mod schedule;
pub mod shim;
pub mod train;
pub mod train_loop;
pub mod vit;

pub use error::{Error, Mismatch};

/// Tests that seed or draw from torch's global RNG (model init included) hold this, so that
/// tests running in parallel threads do not draw from each other's streams.
#[cfg(test)]
pub(crate) fn torch_rng() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
