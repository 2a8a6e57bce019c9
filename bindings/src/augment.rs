//! `Recipe` and `Augmenter`: the two-view augmentation on one image, for people who only want
//! the ops (the loader applies the same code to every sample).

use pyo3::prelude::*;
use pyo3::types::PyByteArray;
use twoview_pipeline::augment::{self, Augmenter as Worker};
use twoview_pipeline::{RgbMut, RgbRef};

use crate::{RecipeError, to_py};

/// A two-view augmentation recipe: a preset (`Recipe.preset("mocov3_vit")`), a TOML file or
/// text, or a dict/JSON of the same fields. `to_toml()` writes what `from_toml` reads.
#[pyclass(module = "twoview._native", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct Recipe {
    pub(crate) inner: augment::Recipe,
}

#[pymethods]
impl Recipe {
    /// The named preset: mocov3_vit, mocov3_resnet, byol or simclr.
    #[staticmethod]
    fn preset(name: &str) -> PyResult<Self> {
        Ok(Self { inner: augment::Recipe::preset(name).map_err(to_py)? })
    }

    /// A preset name, or else the path of a TOML recipe file.
    #[staticmethod]
    fn preset_or_file(name_or_path: &str) -> PyResult<Self> {
        Ok(Self { inner: augment::Recipe::preset_or_file(name_or_path).map_err(to_py)? })
    }

    /// Parses and validates TOML; `origin` names it in errors.
    #[staticmethod]
    #[pyo3(signature = (text, origin = "<string>"))]
    fn from_toml(text: &str, origin: &str) -> PyResult<Self> {
        Ok(Self { inner: augment::Recipe::from_toml(text, origin).map_err(to_py)? })
    }

    /// Parses and validates JSON (what `json.dumps(recipe_dict)` gives).
    #[staticmethod]
    #[pyo3(signature = (text, origin = "<dict>"))]
    fn from_json(text: &str, origin: &str) -> PyResult<Self> {
        let inner: augment::Recipe = serde_json::from_str(text)
            .map_err(|e| RecipeError::new_err(format!("recipe {origin}: {e}")))?;
        inner.validate().map_err(to_py)?;
        Ok(Self { inner })
    }

    /// A dict of the recipe's fields (what `to_dict` gives).
    #[staticmethod]
    #[pyo3(signature = (fields, origin = "<dict>"))]
    fn from_dict(py: Python<'_>, fields: &Bound<'_, PyAny>, origin: &str) -> PyResult<Self> {
        let text: String = py.import("json")?.call_method1("dumps", (fields,))?.extract()?;
        Self::from_json(&text, origin)
    }

    /// Reads and validates a TOML recipe file.
    #[staticmethod]
    fn load(path: std::path::PathBuf) -> PyResult<Self> {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| RecipeError::new_err(format!("{}: {e}", path.display())))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The recipe's fields as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("json")?.call_method1("loads", (self.to_json(),))
    }

    /// The recipe as TOML.
    fn to_toml(&self) -> String {
        self.inner.to_toml()
    }

    /// The recipe as JSON (`json.loads` gives the dict `from_json` reads).
    fn to_json(&self) -> String {
        serde_json::to_string(&self.inner).expect("a recipe always serialises")
    }

    /// Its short name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// Where its values come from.
    #[getter]
    fn source(&self) -> &str {
        &self.inner.source
    }

    fn __repr__(&self) -> String {
        format!("Recipe({:?}: {})", self.inner.name, self.inner.source)
    }
}

/// One worker's augmentation state (resizer, blur scratch): reuse it across calls.
#[pyclass(module = "twoview._native")]
pub struct Augmenter {
    recipe: augment::Recipe,
    height: u32,
    width: u32,
    worker: Worker,
}

#[pymethods]
impl Augmenter {
    #[new]
    fn new(recipe: &Recipe, height: u32, width: u32) -> PyResult<Self> {
        if height == 0 || width == 0 {
            return Err(RecipeError::new_err(format!("view size {width}x{height} must be > 0")));
        }
        Ok(Self { recipe: recipe.inner.clone(), height, width, worker: Worker::new() })
    }

    /// Both views of `image` (`height * width * 3` bytes, HWC RGB; the Python side passes a
    /// numpy array's bytes) for sample `index` of `epoch` under `seed`: two bytearrays of the
    /// view size and the parameters each view drew, as JSON. The same arguments give the
    /// loader's bytes for that sample.
    #[allow(clippy::too_many_arguments)]
    fn two_views<'py>(
        &mut self,
        py: Python<'py>,
        image: &[u8],
        height: u32,
        width: u32,
        seed: u64,
        epoch: u64,
        index: u64,
    ) -> PyResult<(Bound<'py, PyByteArray>, Bound<'py, PyByteArray>, String)> {
        let (h, w) = (height, width);
        let src = image;
        let n = self.height as usize * self.width as usize * 3;
        let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
        let (height, width) = (self.height, self.width);
        let (recipe, worker) = (&self.recipe, &mut self.worker);
        let logs = py.detach(|| {
            let src = RgbRef::try_new(src, w, h)?;
            let mut v1 = RgbMut::try_new(&mut a, width, height)?;
            let mut v2 = RgbMut::try_new(&mut b, width, height)?;
            worker.two_views(recipe, src, (seed, epoch, index), &mut v1, &mut v2)
        });
        let logs = logs.map_err(to_py)?;
        let json = serde_json::to_string(&logs).expect("logs serialise");
        Ok((PyByteArray::new(py, &a), PyByteArray::new(py, &b), json))
    }
}
