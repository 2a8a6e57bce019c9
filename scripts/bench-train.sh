#!/usr/bin/env bash
# One MoCo v3 training step (fp32, CPU, same threads), twoview beside the PyTorch reference
# (timm ViT + the same heads/loss/AdamW, python/bench_train.py) in the same run, alternating
# so drift on a shared machine hits both. Usage: scripts/bench-train.sh [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
rounds=${1:-3}
scripts/setup-venv.sh
. scripts/env.sh
cargo build --release --locked -p twoview-tools >/dev/null
bin=target/release/twoview
threads=$(nproc)
echo "machine: $threads cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
res=$(mktemp /tmp/twoview-bench-train.XXXXXX)
trap 'rm -f "$res"' EXIT
for cfg in "vit_tiny 16" "vit_small 8"; do
  set -- $cfg
  for r in $(seq "$rounds"); do
    "$bin" bench train-step --preset "$1" --batch "$2" --threads "$threads" --steps 5 --warmup 2 | tee -a "$res"
    .venv/bin/python python/bench_train.py --preset "$1" --batch "$2" --threads "$threads" --steps 5 --warmup 2 | tee -a "$res"
  done
done
# Median over every timed step of every round, per implementation; ratio twoview / PyTorch.
.venv/bin/python - "$res" <<'PY'
import json, statistics, sys
steps = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    steps.setdefault((r["preset"], r["batch"]), {}).setdefault(r["impl"], []).extend(r["step_s"])
for (preset, batch), by in steps.items():
    tv, pt = statistics.median(by["twoview"]), statistics.median(by["pytorch"])
    print(f"{preset} batch {batch}: twoview {tv:.3f} s/step, PyTorch {pt:.3f} s/step, "
          f"ratio {tv / pt:.3f} ({len(by['twoview'])} and {len(by['pytorch'])} steps)")
PY
