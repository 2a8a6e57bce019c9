"""twoview: MoCo v3's two-view data pipeline from Python.

- ``prep_shards(root, out, ...)`` decodes and resizes an image folder into memory-mapped Arrow
  shards (what ``twoview prep-shards`` does), with a progress bar.
- ``Loader(shards, batch_size=..., ...)`` iterates two-view batches as ``torch.uint8`` tensors
  ``[B, 2, H, W, 3]`` that are the loader's own buffers (DLPack, no copy).
- ``Augmenter(recipe).two_views(image, seed, epoch, index)`` applies the recipe to one image.
- ``Recipe`` is an augmentation recipe: a preset, a TOML file or text, or a dict.

Every error is a ``twoview.Error`` (``ShardError``, ``RecipeError``, ``LoaderError``,
``PrepError``) whose message names the file, row or key.
"""

from ._native import (
    DEFAULT_MAX_PIXELS,
    PRESETS,
    Error,
    LoaderError,
    PrepError,
    Recipe,
    RecipeError,
    ShardError,
    simd_level,
)
from ._augment import Augmenter, as_recipe
from ._loader import Batch, Loader
from ._prep import PrepSummary, Skipped, SkippedInputs, SkippedInputsWarning, prep_shards

__version__ = "0.0.0"

__all__ = [
    "Augmenter",
    "Batch",
    "DEFAULT_MAX_PIXELS",
    "Error",
    "Loader",
    "LoaderError",
    "PRESETS",
    "PrepError",
    "PrepSummary",
    "Recipe",
    "RecipeError",
    "ShardError",
    "Skipped",
    "SkippedInputs",
    "SkippedInputsWarning",
    "as_recipe",
    "prep_shards",
    "simd_level",
]
