"""Recipes and the one-image augmenter."""

from __future__ import annotations

import json
import os
from typing import Any, List, Tuple, Union

from ._native import Augmenter as _NativeAugmenter
from ._native import Recipe

RecipeLike = Union[str, "os.PathLike[str]", dict, Recipe]


def as_recipe(recipe: RecipeLike) -> Recipe:
    """A ``Recipe`` from a preset name, a TOML file path, a dict of its fields, or a Recipe."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return Recipe.from_dict(recipe)
    if isinstance(recipe, (str, os.PathLike)):
        return Recipe.preset_or_file(os.fspath(recipe))
    raise TypeError(f"recipe must be a preset name, a path, a dict or a Recipe, not {type(recipe).__name__}")


def _size(size: Union[int, Tuple[int, int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


class Augmenter:
    """The recipe's two views of one image, byte-identical to what the loader makes for it.

    >>> aug = Augmenter("mocov3_vit", size=224)
    >>> v1, v2, params = aug.two_views(image_hwc_uint8, seed=0, epoch=0, index=17)

    ``image`` is a ``[H, W, 3]`` uint8 array (numpy, torch on CPU) or a PIL image. With the
    loader's seed, an epoch and a row index (and the row's stored pixels), the views are the
    loader's for that sample. ``params`` lists, per view, the crop box and what each step drew.
    """

    def __init__(self, recipe: RecipeLike = "mocov3_vit", size: Union[int, Tuple[int, int]] = 224):
        self.recipe = as_recipe(recipe)
        self.height, self.width = _size(size)
        self._native = _NativeAugmenter(self.recipe, self.height, self.width)

    def two_views(self, image: Any, seed: int = 0, epoch: int = 0, index: int = 0) -> Tuple[Any, Any, List[dict]]:
        import numpy as np

        if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
            image = np.asarray(image.convert("RGB"))
        elif hasattr(image, "numpy") and hasattr(image, "cpu"):  # a torch tensor
            image = image.cpu().numpy()
        arr = np.ascontiguousarray(image)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"image must be [H, W, 3] uint8, got {arr.dtype} of shape {list(arr.shape)}")
        h, w = arr.shape[:2]
        a, b, logs = self._native.two_views(arr.tobytes(), h, w, seed, epoch, index)
        shape = (self.height, self.width, 3)
        v1 = np.frombuffer(a, dtype=np.uint8).reshape(shape)
        v2 = np.frombuffer(b, dtype=np.uint8).reshape(shape)
        return v1, v2, json.loads(logs)

    def __repr__(self) -> str:
        return f"Augmenter({self.recipe.name!r}, size=({self.height}, {self.width}))"
