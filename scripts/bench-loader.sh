#!/usr/bin/env bash
# The loader end to end, twoview beside torchvision's DataLoader (moco-v3's reference loader) in
# the same run on the same images (imagenette224 train): pairs/s at 1 and 2 workers from raw and
# JPEG shards, data-wait with a simulated step needing 90 % of the loader's capacity, peak RSS, and
# RSS on a 10x larger set (the same shard files listed ten times), and offline views. Usage: scripts/bench-loader.sh [DATA]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
data=${1:-$root/../shared/datasets/imagenette224}
scripts/setup-venv.sh
. scripts/env.sh
cargo build --release --locked -p twoview-tools >/dev/null
bin=target/release/twoview
work=$(mktemp -d /tmp/twoview-bench-loader.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
"$bin" prep-shards "$data" --split train --out "$work/raw" >/dev/null 2>&1
# ImageNet-sized: 1000 photos re-encoded at 500x375 q90, stored at shorter side 256 (341x256).
.venv/bin/python python/bench_decode.py make "$data/train" "$work/inet/c" 1000 --size 500x375
"$bin" prep-shards "$work/inet" --out "$work/inet-raw" >/dev/null 2>&1
"$bin" prep-shards "$work/inet" --out "$work/inet-jpeg" --encoding jpeg >/dev/null 2>&1
"$bin" prep-shards "$data" --split train --out "$work/jpeg" --encoding jpeg >/dev/null 2>&1
# 10x: every raw shard listed ten times (symlinks), to see memory stay flat in dataset size.
mkdir -p "$work/raw10"
.venv/bin/python - "$work/raw" "$work/raw10" <<'PY'
import json, os, sys
src, dst = sys.argv[1:]
m = json.load(open(os.path.join(src, "manifest.json")))
shards = []
for k in range(10):
    for s in m["splits"]["train"]["shards"]:
        name = f"x{k}-{s['file']}"
        os.symlink(os.path.join(src, s["file"]), os.path.join(dst, name))
        shards.append(dict(s, file=name))
m["splits"]["train"].update(shards=shards, rows=10 * m["splits"]["train"]["rows"])
json.dump(m, open(os.path.join(dst, "manifest.json"), "w"))
PY
for set in raw jpeg; do
  for t in 1 2; do
    echo "[$set shards]"
    "$bin" bench loader "$work/$set" --threads $t --batches 60 --step-fraction 0.9 --label "$set" | grep -v '^JSON'
  done
done
for set in inet-raw inet-jpeg; do
  "$bin" bench loader "$work/$set" --threads 1 --batches 40 --label "$set" | grep -v '^JSON'
done
"$bin" bench loader "$work/raw10" --threads 1 --batches 60 --label raw10 | grep -v '^JSON'
# Offline views: 2 variants at 224, record batches of 64 (the bench's batch): zero-copy batches.
"$bin" prep-shards "$data" --split train --out "$work/raw" --views 2 --view-batch-rows 64 >/dev/null 2>&1
"$bin" bench loader "$work/raw" --views --threads 1 --batches 60 --step-fraction 0.9 --label views | grep -v '^JSON'
for w in 1 2; do
  .venv/bin/python python/bench_loader.py "$data/train" --workers $w --batches 30 | grep -v '^JSON'
done
