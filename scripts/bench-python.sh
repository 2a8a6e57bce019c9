#!/usr/bin/env bash
# The Python bindings' loader (twoview.Loader) beside the Rust loader (`twoview bench loader`) and
# torchvision's DataLoader with moco-v3's two crops, same run, same images (imagenette224 train),
# same cores: pairs/s at 1 and 2 worker threads from raw and JPEG shards, each twoview figure the
# median of 3 runs alternated Rust/Python. Usage: scripts/bench-python.sh [DATA]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
data=${1:-$root/../shared/datasets/imagenette224}
scripts/setup-venv.sh
scripts/setup-python.sh --profile release
. scripts/env.sh
cargo build --release --locked -p twoview-tools >/dev/null
bin=target/release/twoview
work=$(mktemp -d /tmp/twoview-bench-python.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), SIMD $(python -c 'import twoview; print(twoview.simd_level())')"
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
"$bin" prep-shards "$data" --split train --out "$work/raw" >/dev/null 2>&1
"$bin" prep-shards "$data" --split train --out "$work/jpeg" --encoding jpeg >/dev/null 2>&1
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
rate() { sed -n 's/.*"pairs_per_s": \([0-9.]*\).*/\1/p'; }
for set in raw jpeg; do
  for t in 1 2; do
    rs=() ps=()
    for _ in 1 2 3; do
      rs+=("$("$bin" bench loader "$work/$set" --threads $t --batches 60 | rate)")
      ps+=("$(python python/bench_python_loader.py "$work/$set" --threads $t --batches 60 | rate)")
    done
    r=$(printf '%s\n' "${rs[@]}" | median) p=$(printf '%s\n' "${ps[@]}" | median)
    echo "$set shards, $t threads: Rust loader $r pairs/s (runs: ${rs[*]}), Python twoview.Loader $p pairs/s (runs: ${ps[*]}); Python/Rust $(python -c "print(f'{$p / $r:.3f}')")"
  done
done
for w in 1 2; do
  python python/bench_loader.py "$data/train" --workers $w --batches 30 | grep -v '^JSON'
done
