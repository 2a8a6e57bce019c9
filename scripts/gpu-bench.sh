#!/usr/bin/env bash
# GPU figures for docs/benchmarks.md (issue 5): img/s, data-wait and MFU of MoCo v3 ViT-S/16 and
# ViT-B/16 at 224, bf16, on a machine with an NVIDIA GPU and torch 2.11.0+cu130 but no Rust.
#
#   scripts/gpu-bench.sh prepare [DATA]   # here: release binary (stripped) + 1,000 JPEG-shard
#                                         # images into .cache/gpu-bench (< 64 MiB, carried)
#   scripts/gpu-bench.sh device [TORCH_LIB] [PEAK_TFLOPS]
#                                         # there: step benchmarks, then a real loader-fed run
#
# MFU = backbone FLOPs per step (VitConfig::moco_step_flops_per_image × batch) / step time /
# peak dense bf16 FLOP/s (H200 SXM: 989 TFLOP/s; pass another peak for another GPU).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=.cache/gpu-bench
case "${1:-}" in
  prepare)
    data=${2:-$root/../shared/datasets/imagenette224}
    . scripts/env.sh
    cargo build --release --locked -p twoview-tools
    rm -rf "$out" && mkdir -p "$out/images"
    strip -o "$out/twoview" target/release/twoview
    # 100 images of each of the 10 classes, stored as JPEG (decoded by the loader's workers).
    for d in "$data"/train/*/; do
      c=$(basename "$d"); mkdir -p "$out/images/$c"
      ls "$d" | sort | head -100 | while read -r f; do ln -s "$d$f" "$out/images/$c/$f"; done
    done
    target/release/twoview prep-shards "$out/images" --out "$out/shards" --encoding jpeg --short-side 256
    rm -rf "$out/images"
    du -sh "$out"
    ;;
  device)
    lib=${2:-$(ls -d /opt/torch/.venv/lib/python3*/site-packages/torch/lib | head -1)}
    peak=${3:-989}
    export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    bin=$out/twoview
    "$bin" info
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true
    res=${OUT:-/tmp}/gpu-bench.jsonl
    : > "$res"
    for cfg in "vit_small 256" "vit_base 256"; do
      set -- $cfg
      "$bin" bench train-step --device cuda --bf16 --preset "$1" --batch "$2" --steps 20 --warmup 5 | tee -a "$res"
    done
    # Loader-fed training: 1,000 JPEG rows decoded and augmented by the loader (15 workers).
    for p in vit_small vit_base; do
      run=${OUT:-/tmp}/run-$p
      "$bin" train --shards "$out/shards" --out "$run" --device cuda --preset "$p" \
        --set batch_size=256 --set epochs=100 --set warmup_epochs=10 --set max_steps=120 \
        --set log_every=20 --set checkpoint_every=0 --set threads=15 --set prefetch=6 2>&1 | tail -4
      tail -n 3 "$run/metrics.jsonl" | tee -a "$res"
    done
    python3 - "$res" "$peak" <<'PY'
import json, sys
peak = float(sys.argv[2]) * 1e12
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "mfu_flops_per_s" in r:
        print(f"{r['preset']} batch {r['batch']}: {r['img_per_s']:.0f} img/s, step {r['step_s_median']*1e3:.1f} ms, "
              f"MFU {100 * r['mfu_flops_per_s'] / peak:.1f} % of {peak/1e12:.0f} TFLOP/s")
    elif r.get("kind") == "train":
        print(f"train step {r['step']}: {r['img_per_s']:.0f} img/s, data-wait {100*r['data_wait']:.2f} %, loss {r['loss']:.3f}")
PY
    ;;
  *) echo "usage: $0 prepare [DATA] | device [TORCH_LIB] [PEAK_TFLOPS]" >&2; exit 2 ;;
esac
