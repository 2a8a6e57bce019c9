#!/usr/bin/env bash
# The main job end to end: prep-shards -> train -> eval on a dataset root (default:
# ../shared/datasets/imagenette224 beside the repo). Usage: scripts/demo.sh [DATASET_ROOT]
# Stages that do not exist yet are reported as missing, and the demo stops there: it never
# pretends to have run them.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
default_data="$root/../shared/datasets/imagenette224"
data=${1:-$default_data}
if [[ ! -d "$data" ]]; then
  echo "demo: no dataset at $data" >&2
  echo "demo: pass an ImageNet-style root (train/<class>/*.JPEG): scripts/demo.sh /path/to/root" >&2
  exit 2
fi
data=$(cd "$data" && pwd)

scripts/setup-system.sh
scripts/setup-venv.sh
. scripts/env.sh
echo "demo: building release binaries"
cargo build --release --locked -p twoview-tools
bin="$root/target/release/twoview"
"$bin" info

out="$root/runs/demo"
mkdir -p "$out"
echo "demo: dataset $data, outputs in $out"

# Each stage: name, the issue that brings it, the command. A stage runs only if the binary has it.
run_stage() {
  local name=$1 issue=$2
  shift 2
  if ! "$bin" help "$name" >/dev/null 2>&1; then
    echo
    echo "demo: stage '$name' is not implemented yet (issue #$issue); stopping here."
    echo "demo: stages completed: ${done_stages:-none}"
    exit 0
  fi
  echo
  echo "demo: stage $name"
  local rc=0
  "$bin" "$name" "$@" || rc=$?
  # prep-shards exits 3 when it stored everything it could and skipped (and listed) the rest.
  if [[ $rc -ne 0 && ! ($name == prep-shards && $rc -eq 3) ]]; then
    echo "demo: stage $name failed (exit $rc)" >&2
    exit "$rc"
  fi
  done_stages="${done_stages:+$done_stages, }$name"
}

done_stages=""
# What the recipe does to real images, before any training: a picture to look at.
run_stage augment-preview 3 "$data" --recipe mocov3_vit --n 8 --out "$out/augment-preview.png"
# Shorter side 72 raw: the CPU demo trains on 64-px views (configs/demo-cpu.toml); 13 k images
# stay ~0.2 GB.
run_stage prep-shards 7 "$data" --out "$out/shards72" --short-side 72
"$bin" shards inspect "$out/shards72" | sed -n 1,8p # sed reads all of it: no SIGPIPE under pipefail
# A rerun continues an interrupted run (--resume) or, when finished, leaves it as it is; the run
# folder is named after the configuration, so an edited configuration starts a new run.
run="$out/run-$(sha256sum configs/demo-cpu.toml | cut -c1-8)"
run_stage train 5 --shards "$out/shards72" --out "$run" --config configs/demo-cpu.toml --resume
.venv/bin/python - "$run/metrics.jsonl" <<'PY'
import json, sys
knn = [r for r in map(json.loads, open(sys.argv[1])) if r.get("kind") == "knn"]
train = [r for r in map(json.loads, open(sys.argv[1])) if r.get("kind") == "train"]
if train:
    first, last = train[: max(1, len(train) // 10)], train[-max(1, len(train) // 10):]
    mean = lambda rs: sum(r["loss"] for r in rs) / len(rs)
    print(f"demo: loss {mean(first):.3f} (first 10 % of logged steps) -> {mean(last):.3f} (last 10 %)")
if len(knn) >= 2:
    a, b = knn[0], knn[-1]
    print(f"demo: kNN top-1 on val: random init (step {a['step']}) {a['top1']:.2f} % -> "
          f"pretrained (step {b['step']}) {b['top1']:.2f} %")
PY
run_stage eval 6 knn --checkpoint "$run" --train-shards "$out/shards72" \
  --val-shards "$out/shards72"
echo "demo: curves in $run/plot.png"
echo "demo: all stages ran: $done_stages"
