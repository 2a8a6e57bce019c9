//! `twoview._native`: the pipeline (prep, loader, augmentation) for Python, without libtorch.
//! The Python package `twoview` (bindings/python/twoview) wraps it; batches cross into PyTorch
//! through DLPack without a copy ([`dlpack`]).

mod augment;
mod dlpack;
mod loader;
mod prep;

use pyo3::create_exception;
use pyo3::prelude::*;

create_exception!(_native, Error, pyo3::exceptions::PyRuntimeError, "Base of twoview's errors.");
create_exception!(_native, ShardError, Error, "A shard, its manifest or a row cannot be read.");
create_exception!(_native, RecipeError, Error, "An augmentation recipe is malformed or invalid.");
create_exception!(_native, LoaderError, Error, "The loader cannot start or go on.");
create_exception!(_native, PrepError, Error, "A prep cannot read its inputs or write its output.");

/// The Python exception for a pipeline error, its message naming the file, row or key.
pub(crate) fn to_py(e: twoview_pipeline::Error) -> PyErr {
    use twoview_pipeline::Error as E;
    let msg = e.to_string();
    match e {
        E::RecipeParse { .. } | E::InvalidRecipe { .. } => RecipeError::new_err(msg),
        E::Format(_) | E::BadRow { .. } => ShardError::new_err(msg),
        E::Loader { .. } => LoaderError::new_err(msg),
        E::Interrupted => pyo3::exceptions::PyKeyboardInterrupt::new_err(msg),
        E::Layout { .. } | E::Labels { .. } | E::Output { .. } | E::Io { .. } => {
            PrepError::new_err(msg)
        }
        _ => Error::new_err(msg),
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("ShardError", py.get_type::<ShardError>())?;
    m.add("RecipeError", py.get_type::<RecipeError>())?;
    m.add("LoaderError", py.get_type::<LoaderError>())?;
    m.add("PrepError", py.get_type::<PrepError>())?;
    m.add("PRESETS", twoview_pipeline::augment::Recipe::PRESETS.to_vec())?;
    m.add("DEFAULT_MAX_PIXELS", twoview_pipeline::decode::DEFAULT_MAX_PIXELS)?;
    m.add_class::<augment::Recipe>()?;
    m.add_class::<augment::Augmenter>()?;
    m.add_class::<loader::NativeLoader>()?;
    m.add_class::<loader::NativeBatch>()?;
    m.add_function(wrap_pyfunction!(prep::prep_shards, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    Ok(())
}

/// The SIMD level the pipeline's kernels run at (`TWOVIEW_SIMD` can lower it).
#[pyfunction]
fn simd_level() -> String {
    twoview_pipeline::simd::level().name().to_owned()
}
