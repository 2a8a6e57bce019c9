#!/usr/bin/env bash
# Test data the repository does not hold, fetched once into .cache/test-data (git-ignored):
#   jpeg-corpus/  ~130 odd real JPEGs and ~590 PNGs from other projects' test suites, gathered by
#                 ../shared/tools/make-jpeg-corpus.sh (pip/apt downloads, nothing installed).
# Idempotent: a finished fetch leaves a stamp and is not redone.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$root/.cache/test-data/jpeg-corpus"
maker="$root/../shared/tools/make-jpeg-corpus.sh"
[[ -f "$out/.done" ]] && exit 0
if [[ ! -x "$maker" && ! -f "$maker" ]]; then
  echo "fetch-test-data: $maker is absent; the decoder corpus tests will skip (outside CI)" >&2
  exit 0
fi
echo "fetch-test-data: gathering the JPEG/PNG corpus into $out (about a minute)"
rm -rf "$out"
mkdir -p "$out"
PYTHON="$root/.venv/bin/python" NO_PILLOW=1 bash "$maker" "$out" >"$out.log" 2>&1 || {
  echo "fetch-test-data: make-jpeg-corpus.sh failed; its log:" >&2
  tail -30 "$out.log" >&2
  exit 1
}
touch "$out/.done"
