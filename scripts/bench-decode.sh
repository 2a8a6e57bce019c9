#!/usr/bin/env bash
# JPEG decode, decode+resize and whole prep-shards throughput, twoview beside Pillow (which
# decodes with libjpeg-turbo in-process) in the same run on the same files, one core each.
# Sets: imagenette224 (224 px photos, resized to shorter side 128) and ImageNet-sized JPEGs
# (500x375, q90, made from imagenette photos; resized to 256), and 1024x768 ones (where DCT
# scaling by 1/2 applies). Usage: scripts/bench-decode.sh [DATA]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
data=${1:-$root/../shared/datasets/imagenette224}
scripts/setup-venv.sh
. scripts/env.sh
cargo build --release --locked -p twoview-tools >/dev/null
work=$(mktemp -d /tmp/twoview-bench-decode.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
mkdir -p "$work/small/c"
find "$data/train" -name '*.JPEG' | sort | awk 'NR % 47 == 1' | head -200 | xargs -I{} cp {} "$work/small/c/"
.venv/bin/python python/bench_decode.py make "$data/train" "$work/big/c" 200 --size 500x375
.venv/bin/python python/bench_decode.py make "$data/train" "$work/large/c" 100 --size 1024x768
one() { taskset -c 0 "$@"; }
results=()
for set in small:128 big:256 large:256; do
  name=${set%%:*} side=${set##*:}
  results+=("$(one target/release/twoview bench decode "$work/$name" --short-side "$side" --label "$name" | tee >(cat >&2) | sed -n 's/^JSON //p')")
  results+=("$(OMP_NUM_THREADS=1 one .venv/bin/python python/bench_decode.py run "$work/$name" --short-side "$side" --label "$name" | tee >(cat >&2) | sed -n 's/^JSON //p')")
  # Whole prep-shards on one core: read, decode, resize, write raw shards (+ fsync); the rate
  # is prep-shards' own (from the scan to the manifest, process start-up excluded).
  rate=$(one target/release/twoview prep-shards "$work/$name" --out "$work/shards-$name" --short-side "$side" --threads 1 2>/dev/null \
    | sed -n 's/^time: .*(\([0-9.]*\) images\/s).*/\1/p')
  results+=("{\"impl\": \"twoview-prep\", \"label\": \"$name\", \"images_per_s\": $rate}")
done
printf '%s\n' "${results[@]}" | .venv/bin/python python/bench_decode.py table \
  "small=imagenette224 -> 128" "big=500x375 q90 -> 256" "large=1024x768 q90 -> 256"
