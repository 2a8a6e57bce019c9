"""twoview.prep_shards: what the CLI does, as a function."""

import json
import warnings

import pytest

import twoview
from conftest import image_folder, stored_rows


def test_prep_stores_every_image_and_reports(folder, tmp_path):
    calls = []
    s = twoview.prep_shards(folder, tmp_path / "out", short_side=64, rows_per_shard=20,
                            progress=lambda *a: calls.append(a))
    assert s.rows == {"train": 48} and s.inputs == {"train": 48} and not s.skipped
    assert s.shards_written == 3 and s.raw_rows == 48 and not s.already_complete
    rows = stored_rows(tmp_path / "out")
    assert len(rows) == 48 and all(min(h, w) == 64 for _, _, h, w, _, _ in rows)
    assert calls[-1] == ("images", 48, 48, 0)
    assert all(a[1] <= a[2] for a in calls)
    again = twoview.prep_shards(folder, tmp_path / "out", short_side=64, rows_per_shard=20, progress=False)
    assert again.already_complete


def test_damaged_inputs_are_skipped_with_a_warning_or_raised_with_strict(tmp_path):
    root = image_folder(tmp_path / "root", 2, 4)
    (root / "zz_broken").mkdir()
    (root / "zz_broken" / "half.JPEG").write_bytes((next((root).glob("*/*.JPEG"))).read_bytes()[:700])
    with pytest.warns(twoview.SkippedInputsWarning, match="1 inputs skipped"):
        s = twoview.prep_shards(root, tmp_path / "a", progress=False)
    assert [k.key for k in s.skipped] == ["zz_broken/half.JPEG"]
    assert s.skipped[0].reason.startswith("truncated")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert [k["key"] for k in manifest["skipped"]] == ["zz_broken/half.JPEG"]
    with pytest.raises(twoview.SkippedInputs, match="zz_broken/half.JPEG") as e:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            twoview.prep_shards(root, tmp_path / "b", progress=False, strict=True)
    assert e.value.summary.stored == 8


def test_offline_views_and_jpeg_encoding(folder, tmp_path):
    s = twoview.prep_shards(folder, tmp_path / "v", short_side=64, encoding="jpeg", quality=80,
                            views=2, view_size=32, view_batch_rows=8, progress=False)
    assert s.jpeg_rows == 48
    manifest = json.loads((tmp_path / "v" / "manifest.json").read_text())
    assert {"train", "train.views0", "train.views1"} <= set(manifest["splits"])
    assert manifest["settings"]["views"]["size"] == 32
    assert all(enc == 1 for *_, enc, _ in stored_rows(tmp_path / "v"))


def test_a_prep_into_another_prep_s_folder_is_refused(folder, tmp_path):
    twoview.prep_shards(folder, tmp_path / "o", short_side=64, progress=False)
    with pytest.raises(twoview.PrepError, match="different prep"):
        twoview.prep_shards(folder, tmp_path / "o", short_side=72, progress=False)


INTERRUPTIBLE = """
import sys, twoview
def progress(stage, done, total, skipped):
    print("progress", stage, done, total, flush=True)
# Slow on purpose (upscaled, re-encoded): the interrupt must land mid-prep.
twoview.prep_shards(sys.argv[1], sys.argv[2], short_side=448, upscale=True, encoding="jpeg",
                    rows_per_shard=8, batch_rows=4, threads=1, progress=progress)
print("finished", flush=True)
"""


def test_ctrl_c_stops_the_prep_and_the_same_call_resumes(tmp_path):
    import signal
    import subprocess
    import sys

    root = image_folder(tmp_path / "root", 4, 60)
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-c", INTERRUPTIBLE, str(root), str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stdout:  # the first report: the prep is under way
        if line.startswith("progress images"):
            break
    done, total = map(int, line.split()[2:4])
    assert done < total, f"the prep finished before the interrupt could land: {line}"
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode != 0 and "KeyboardInterrupt" in stderr, (p.returncode, stdout, stderr[-2000:])
    assert "finished" not in stdout
    assert not (out / "manifest.json").exists(), "an interrupted prep wrote its manifest"
    s = twoview.prep_shards(root, out, short_side=448, upscale=True, encoding="jpeg", rows_per_shard=8,
                            batch_rows=4, progress=False)
    assert s.shards_resumed > 0, "the shards finished before the interrupt were not kept"
    assert s.stored == 240 and not s.skipped
    assert len(stored_rows(out)) == 240
