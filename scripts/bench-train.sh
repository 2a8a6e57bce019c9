#!/usr/bin/env bash
# One MoCo v3 training step (fp32, CPU, same threads), twoview beside the PyTorch reference
# (timm ViT + the same heads/loss, AdamW(foreach=True), python/bench_train.py) in the same run,
# alternating so drift on a shared machine hits both; the median ratio, its spread over rounds,
# and each side's phase split. Usage: scripts/bench-train.sh [ROUNDS]
# BEFORE=path/to/an/older/twoview adds that binary as a third side (before/after figures).
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
    "$bin" bench train-step --preset "$1" --batch "$2" --threads "$threads" --steps 5 --warmup 2 --phases \
      | sed "s/^{/{\"round\": $r, /" | tee -a "$res"
    .venv/bin/python python/bench_train.py --preset "$1" --batch "$2" --threads "$threads" --steps 5 --warmup 2 --phases \
      | sed "s/^{/{\"round\": $r, /" | tee -a "$res"
    if [ -n "${BEFORE:-}" ]; then
      "$BEFORE" bench train-step --preset "$1" --batch "$2" --threads "$threads" --steps 5 --warmup 2 \
        | sed "s/^{/{\"round\": $r, /; s/\"impl\":\"twoview\"/\"impl\":\"before\"/" | tee -a "$res"
    fi
  done
done
# Per implementation: median over every timed step of every round; the ratio to PyTorch, and
# its spread as the min..max of the per-round ratios; each side's phase medians.
.venv/bin/python - "$res" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault((r["preset"], r["batch"]), {}).setdefault(r["impl"], []).append(r)
for (preset, batch), impls in by.items():
    med = lambda rs: statistics.median([s for r in rs for s in r["step_s"]])
    pt = med(impls["pytorch"])
    for name, rs in impls.items():
        per_round = {r["round"]: statistics.median(r["step_s"]) for r in rs}
        pt_round = {r["round"]: statistics.median(r["step_s"]) for r in impls["pytorch"]}
        ratios = [per_round[k] / pt_round[k] for k in per_round if k in pt_round]
        phases = {k: round(statistics.median([r["phases_s"][k] for r in rs if r.get("phases_s")]), 4)
                  for k in (rs[0].get("phases_s") or {})}
        extra = f", {rs[0]['ops_per_step']} ops and {rs[0]['host_reads_per_step']} host reads per step" \
            if "ops_per_step" in rs[0] else ""
        print(f"{preset} batch {batch} {name}: {med(rs):.3f} s/step, ratio to PyTorch {med(rs) / pt:.3f} "
              f"(rounds {min(ratios):.3f}..{max(ratios):.3f}){extra}; phases {phases}")
PY