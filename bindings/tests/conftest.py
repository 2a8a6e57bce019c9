"""Fixtures of the Python bindings' tests: small shard folders made from the shared
imagenette224 with twoview.prep_shards itself."""

import os
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
IMAGENETTE = pathlib.Path(os.environ.get("TWOVIEW_IMAGENETTE", REPO.parent / "shared/datasets/imagenette224"))
sys.path.insert(0, str(REPO / "python"))  # moco_reference.py


def image_folder(dest: pathlib.Path, classes: int, per_class: int) -> pathlib.Path:
    """The first `per_class` train images of the first `classes` classes, as symlinks."""
    if not (IMAGENETTE / "train").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have {IMAGENETTE}")
        pytest.skip(f"{IMAGENETTE} is absent")
    for c in sorted(os.listdir(IMAGENETTE / "train"))[:classes]:
        (dest / c).mkdir(parents=True, exist_ok=True)
        for f in sorted(os.listdir(IMAGENETTE / "train" / c))[:per_class]:
            (dest / c / f).symlink_to(IMAGENETTE / "train" / c / f)
    return dest


@pytest.fixture(scope="session")
def folder(tmp_path_factory):
    """3 classes x 16 real photos."""
    return image_folder(tmp_path_factory.mktemp("folder") / "root", 3, 16)


@pytest.fixture(scope="session")
def shards(folder, tmp_path_factory):
    """Raw shards of `folder` at short side 80, 3 shards of 16 rows."""
    import twoview

    out = tmp_path_factory.mktemp("shards") / "raw"
    twoview.prep_shards(folder, out, short_side=80, rows_per_shard=16, batch_rows=8, progress=False)
    return out


@pytest.fixture(scope="session")
def jpeg_shards(folder, tmp_path_factory):
    """JPEG shards of `folder` at short side 80."""
    import twoview

    out = tmp_path_factory.mktemp("shards") / "jpeg"
    twoview.prep_shards(folder, out, short_side=80, encoding="jpeg", rows_per_shard=16, progress=False)
    return out


def stored_rows(shard_dir: pathlib.Path, split: str = "train"):
    """Every row of a split in row order, read with pyarrow alone: (key, label, h, w, enc, bytes)."""
    import json

    import pyarrow as pa
    import pyarrow.ipc as ipc

    manifest = json.loads((shard_dir / "manifest.json").read_text())
    rows = []
    for info in manifest["splits"][split]["shards"]:
        reader = ipc.open_file(pa.memory_map(str(shard_dir / info["file"])))
        for b in range(reader.num_record_batches):
            d = reader.get_batch(b).to_pydict()
            rows += list(zip(d["key"], d["label"], d["height"], d["width"], d["encoding"], d["pixels"]))
    return rows
