"""The package installs into a fresh venv that has neither torch nor numpy: from the built wheel
(scripts/setup-python.sh leaves it in target/wheels/) and with `pip install ./bindings`."""

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO

USE = textwrap.dedent(
    """
    import sys, twoview
    s = twoview.prep_shards(sys.argv[1], sys.argv[2], short_side=48, progress=False)
    print("stored", s.stored)
    try:
        twoview.Loader(sys.argv[2], batch_size=4)
    except ImportError as e:
        print("loader:", e)
    """
)


def fresh_venv(path):
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path / "bin" / "python"


def use(python, folder, out):
    r = subprocess.run([str(python), "-c", USE, str(folder), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "stored 48" in r.stdout and "loader: twoview.Loader hands out torch tensors" in r.stdout, r.stdout


def test_the_built_wheel_installs_into_a_fresh_venv(folder, tmp_path):
    wheels = sorted((REPO / "target" / "wheels").glob("*/twoview-*.whl"), key=os.path.getmtime)
    if not wheels:
        pytest.fail("no wheel under target/wheels: run scripts/setup-python.sh")
    python = fresh_venv(tmp_path / "venv")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheels[-1])], check=True)
    use(python, folder, tmp_path / "out")


def test_pip_install_from_the_repository_works_in_a_fresh_venv(folder, tmp_path):
    python = fresh_venv(tmp_path / "venv")
    # The dev profile shares the test build's compiled crates (a user's install builds release).
    env = dict(os.environ, MATURIN_PEP517_ARGS="--profile dev")
    r = subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(REPO / "bindings")],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    use(python, folder, tmp_path / "out")
