#!/usr/bin/env bash
# The loader with the photometric steps on the workers (augment_on=cpu) against deferred to the
# trainer's device (augment_on=device), same run, same shards: pairs/s from raw and JPEG shards
# of ImageNet-sized photos (1,000 imagenette photos re-encoded at 500x375, stored at short side
# 256), 1 and 2 worker threads, at the CPU's best SIMD level and at AVX2 (TWOVIEW_SIMD=avx2);
# each figure the median of 3 runs alternated cpu/device. Then what the deferred steps cost on
# the CPU device (ms per batch of 64, one thread; on a GPU see scripts/gpu-bench.sh).
# Usage: scripts/bench-augment-on.sh [DATA]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
data=${1:-$root/../shared/datasets/imagenette224}
scripts/setup-venv.sh
. scripts/env.sh
cargo build --release --locked -p twoview-tools >/dev/null
bin=target/release/twoview
work=$(mktemp -d /tmp/twoview-bench-augment-on.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
.venv/bin/python python/bench_decode.py make "$data/train" "$work/inet/c" 1000 --size 500x375 >/dev/null
"$bin" prep-shards "$work/inet" --out "$work/raw" >/dev/null 2>&1
"$bin" prep-shards "$work/inet" --out "$work/jpeg" --encoding jpeg >/dev/null 2>&1
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
rate() { sed -n 's/.*"pairs_per_s": \([0-9.]*\).*/\1/p'; }
for simd in best avx2; do
  for set in raw jpeg; do
    for t in 1 2; do
      c=() d=()
      for _ in 1 2 3; do
        run() { if [ $simd = best ]; then "$bin" "$@"; else TWOVIEW_SIMD=avx2 "$bin" "$@"; fi; }
        c+=("$(run bench loader "$work/$set" --threads $t --batches 40 --augment-on cpu | rate)")
        d+=("$(run bench loader "$work/$set" --threads $t --batches 40 --augment-on device | rate)")
      done
      cm=$(printf '%s\n' "${c[@]}" | median) dm=$(printf '%s\n' "${d[@]}" | median)
      echo "SIMD $simd, $set shards, $t threads: augment_on=cpu $cm pairs/s (${c[*]}), augment_on=device $dm pairs/s (${d[*]}); device/cpu $(python3 -c "print(f'{$dm / $cm:.2f}')")x"
    done
  done
done
"$bin" info 2>/dev/null | grep -i simd || true
"$bin" bench photometric "$work/raw" --device cpu --batch 64 --batches 5 --threads 1 | grep -v '^JSON'
