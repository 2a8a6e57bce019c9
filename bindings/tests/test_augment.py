"""twoview.Recipe and twoview.Augmenter."""

import numpy as np
import pytest

import twoview


@pytest.mark.parametrize("name", twoview.PRESETS)
def test_recipes_round_trip_through_toml_and_dicts(name):
    r = twoview.Recipe.preset(name)
    assert twoview.Recipe.from_toml(r.to_toml()) == r
    assert twoview.Recipe.from_dict(r.to_dict()) == r
    assert r.name == name


def test_a_changed_recipe_differs_and_changes_the_views():
    d = twoview.Recipe.preset("mocov3_vit").to_dict()
    d["view1"]["steps"] = []  # crop only
    crop_only = twoview.Recipe.from_dict(d)
    assert crop_only != twoview.Recipe.preset("mocov3_vit")
    img = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    a = twoview.Augmenter(crop_only, size=40).two_views(img, seed=1, epoch=0, index=3)
    assert a[2][0]["steps"] == [None] * len(a[2][0]["steps"])


def test_two_views_are_deterministic_and_keyed_on_seed_epoch_index():
    img = np.random.default_rng(1).integers(0, 256, (100, 140, 3), dtype=np.uint8)
    aug = twoview.Augmenter("mocov3_vit", size=(48, 40))
    v1, v2, params = aug.two_views(img, seed=0, epoch=0, index=5)
    assert v1.shape == v2.shape == (48, 40, 3) and v1.dtype == np.uint8
    same = aug.two_views(img, seed=0, epoch=0, index=5)
    assert np.array_equal(same[0], v1) and np.array_equal(same[1], v2) and same[2] == params
    for other in [dict(seed=1, epoch=0, index=5), dict(seed=0, epoch=1, index=5), dict(seed=0, epoch=0, index=6)]:
        assert aug.two_views(img, **other)[2] != params, other
    crop = params[0]["crop"]
    assert 0 < crop["width"] <= 140 and 0 < crop["height"] <= 100


def test_pil_images_and_arrays_give_the_same_views():
    from PIL import Image

    img = np.random.default_rng(2).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    aug = twoview.Augmenter("byol", size=32)
    a = aug.two_views(img, seed=3, epoch=2, index=1)
    b = aug.two_views(Image.fromarray(img), seed=3, epoch=2, index=1)
    assert all(np.array_equal(x, y) for x, y in zip(a[:2], b[:2]))


def test_an_image_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"\[H, W, 3\] uint8"):
        twoview.Augmenter().two_views(np.zeros((8, 8), np.uint8))
