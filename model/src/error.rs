//! Errors of the model crate.

/// What can go wrong outside the model math (which is infallible by design).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A device string that is neither `cpu` nor `cuda[:N]`.
    #[error("unknown device {given:?}: expected cpu, cuda or cuda:N")]
    UnknownDevice { given: String },
    /// A CUDA device was asked for on a machine or libtorch build without it.
    #[error("{given}: CUDA is not available: {reason}; or run with --device cpu")]
    CudaUnavailable { given: String, reason: String },
    /// A CUDA device index past the devices present.
    #[error("{given}: only {count} CUDA device(s) present")]
    NoSuchCudaDevice { given: String, count: usize },
}
