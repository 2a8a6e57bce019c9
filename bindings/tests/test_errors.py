"""Bad input: exceptions that name the folder, file, row or key."""

import shutil

import pytest

import twoview


def test_a_missing_shard_folder_names_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(twoview.ShardError, match=str(missing)):
        twoview.Loader(missing, batch_size=4)


def test_a_missing_split_names_the_ones_there(shards):
    with pytest.raises(twoview.ShardError, match="val"):
        twoview.Loader(shards, split="val", batch_size=4)


def test_a_damaged_shard_names_the_file(shards, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(shards, bad)
    victim = sorted(bad.glob("train-*.arrow"))[1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(twoview.ShardError, match=victim.name):
        loader = twoview.Loader(bad, batch_size=4, size=32)
        for _ in loader:
            pass


def test_a_missing_shard_file_names_it(shards, tmp_path):
    bad = tmp_path / "gone"
    shutil.copytree(shards, bad)
    victim = sorted(bad.glob("train-*.arrow"))[2]
    victim.unlink()
    with pytest.raises(twoview.ShardError, match=victim.name):
        twoview.Loader(bad, batch_size=4, size=32)


def test_a_recipe_with_a_bad_value_names_the_field():
    d = twoview.Recipe.preset("mocov3_vit").to_dict()
    d["view1"]["crop"]["scale"] = [0.9, 0.2]
    with pytest.raises(twoview.RecipeError, match=r"view1\.crop\.scale"):
        twoview.Recipe.from_dict(d)


def test_a_recipe_with_an_unknown_key_names_it(tmp_path):
    text = twoview.Recipe.preset("byol").to_toml().replace("[view1.crop]", "[view1.crop]\nzoom = 2")
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(twoview.RecipeError, match="zoom"):
        twoview.Loader(".", recipe=str(path))
    with pytest.raises(twoview.RecipeError, match=str(path)):
        twoview.Recipe.load(path)


def test_an_unknown_preset_lists_the_known_ones():
    with pytest.raises(twoview.RecipeError, match="mocov3_vit"):
        twoview.Recipe.preset("mocov4")


def test_a_batch_larger_than_the_rank_s_rows_says_so(shards):
    with pytest.raises(twoview.LoaderError, match="make no full batch of 1000"):
        twoview.Loader(shards, batch_size=1000)


def test_a_bad_policy_names_the_choices(shards):
    with pytest.raises(twoview.LoaderError, match='"fail" or "replace"'):
        twoview.Loader(shards, batch_size=4, on_bad_row="skip")


def test_a_cursor_past_the_epoch_is_refused(shards):
    with pytest.raises(twoview.LoaderError, match="past the end of an epoch"):
        twoview.Loader(shards, batch_size=4, cursor={"epoch": 0, "batch": 999})


def test_prep_of_a_missing_root_names_it(tmp_path):
    with pytest.raises(twoview.PrepError, match="nowhere"):
        twoview.prep_shards(tmp_path / "nowhere", tmp_path / "out", progress=False)


def test_prep_of_bad_options_names_them(folder, tmp_path):
    with pytest.raises(twoview.PrepError, match="encoding=\"webp\""):
        twoview.prep_shards(folder, tmp_path / "out", encoding="webp")


def test_an_allocator_returning_the_wrong_buffers_is_refused(shards):
    import torch

    with pytest.raises(twoview.LoaderError, match="cannot allocate batch buffers.*torch.uint8 tensor"):
        twoview.Loader(shards, batch_size=4, size=32, _alloc=lambda n: torch.empty(n // 4, dtype=torch.float32))
    with pytest.raises(twoview.LoaderError, match="cannot allocate batch buffers.*out of pinned memory"):
        twoview.Loader(shards, batch_size=4, size=32, _alloc=lambda n: (_ for _ in ()).throw(RuntimeError("out of pinned memory")))


def test_a_damaged_row_names_shard_row_and_key_or_is_replaced(jpeg_shards, tmp_path):
    from conftest import stored_rows

    bad = tmp_path / "badrow"
    shutil.copytree(jpeg_shards, bad)
    victim = sorted(bad.glob("train-*.arrow"))[0]
    data = bytearray(victim.read_bytes())
    third = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"][2]
    data[third + 3] = 0x20  # a JPEG whose second marker is no marker: the decoder refuses it
    victim.write_bytes(bytes(data))
    key = stored_rows(bad)[2][0]
    with pytest.raises(twoview.ShardError) as e:
        for _ in twoview.Loader(bad, batch_size=8, size=32, threads=1):
            pass
    msg = str(e.value)
    assert victim.name in msg and "row 2" in msg and key in msg and "marker" in msg, msg
    with twoview.Loader(bad, batch_size=8, size=32, threads=1, on_bad_row="replace") as loader:
        n = sum(b.views.shape[0] for b in loader)
        assert n == len(loader) * 8 and loader.stats()["replaced"] >= 1
