#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): set-up if needed, then format, lints, the
# invariant that the pipeline never links libtorch, and every test of the workspace.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup-system.sh
scripts/setup-venv.sh
scripts/fetch-test-data.sh
# The Python bindings, in the venv before the tests (tests/integration/python_loader.rs uses them).
scripts/setup-python.sh --profile dev
. scripts/env.sh

step() { printf '\n== %s\n' "$*"; }

# A clean clone builds once: incremental state would only take disk (1.3 GB).
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
# The build and the tests' scratch need about 6 GB under target/; say so before a full disk does.
free_kb=$(df -Pk "$root" | awk 'NR == 2 { print $4 }')
echo "free disk at $root: $((free_kb / 1024 / 1024)) GB (the build and the tests need about 6 GB)"
if [ "$free_kb" -lt $((6 * 1024 * 1024)) ]; then
  echo "warning: under 6 GB free; the build or a test may fail with 'No space left on device'" >&2
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "invariant: twoview-pipeline and the Python bindings do not depend on libtorch"
if cargo tree --locked -p twoview-pipeline -e normal,build --prefix none | grep -E '^(tch|torch-sys) '; then
  echo "twoview-pipeline depends on libtorch (see above); it must stay usable without it" >&2
  exit 1
fi
if cargo tree --locked -p twoview-python -e normal,build --prefix none | grep -E '^(tch|torch-sys) '; then
  echo "the Python bindings depend on libtorch (see above); the wheel must not link it" >&2
  exit 1
fi
echo ok

step "cargo test --workspace"
cargo test --workspace --locked

step "pytest bindings/tests (the Python bindings)"
python -m pytest -q bindings/tests
