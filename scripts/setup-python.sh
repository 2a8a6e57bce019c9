#!/usr/bin/env bash
# Builds the Python bindings (bindings/: pyo3 + maturin, an abi3 wheel for CPython >= 3.9 that
# links no libtorch) and installs the wheel into .venv.
#   usage: scripts/setup-python.sh [--profile release|dev]
# release by default (what a user gets: `pip install ./bindings` builds the same); the test
# command uses dev, which shares the test build's compiled dependencies. The wheel stays in
# target/wheels/PROFILE/ (`pip install` it into any venv).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
profile=release
if [[ ${1:-} == --profile ]]; then profile=${2:?--profile needs release or dev}; fi
. scripts/env.sh
command -v maturin >/dev/null || { echo "setup-python: maturin missing; run scripts/setup-venv.sh" >&2; exit 1; }
out="$root/target/wheels/$profile"
rm -rf "$out"
maturin build --quiet --profile "$profile" --manifest-path bindings/Cargo.toml --out "$out"
wheel=$(ls "$out"/twoview-*.whl)
python -m pip install --quiet --force-reinstall --no-deps "$wheel"
echo "setup-python: installed $(basename "$wheel") ($profile build) into .venv"
