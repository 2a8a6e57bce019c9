#!/usr/bin/env bash
# Data-parallel on the CPU: `twoview bench train-step` in 1 process (global batch B, 1 libtorch
# thread) against 2 processes over Gloo on 127.0.0.1 (B/2 each, 1 thread each), alternating
# rounds in the same run. The 2-process step includes the gradient all-reduce, the SyncBN and
# key all-gathers; scaling = 1-process step / 2-process step (2.0 is perfect).
# Usage: scripts/bench-dist.sh [ROUNDS] [PRESET] [GLOBAL_BATCH]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
rounds=${1:-3}; preset=${2:-vit_tiny}; batch=${3:-16}
. scripts/env.sh
cargo build --release --locked -p twoview-tools >/dev/null
bin=target/release/twoview
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
res=$(mktemp /tmp/twoview-bench-dist.XXXXXX)
trap 'rm -f "$res"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for r in $(seq "$rounds"); do
  "$bin" bench train-step --preset "$preset" --batch "$batch" --threads 1 --steps 5 --warmup 2 | tee -a "$res"
  p=$(port)
  for rank in 0 1; do
    RANK=$rank WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$p \
      "$bin" bench train-step --preset "$preset" --batch $((batch / 2)) --threads 1 --steps 5 --warmup 2 --phases &
  done | tee -a "$res"
  wait
done
python3 - "$res" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
one = [s for r in rows if r["world"] == 1 for s in r["step_s"]]
two = [s for r in rows if r["world"] == 2 and r["rank"] == 0 for s in r["step_s"]]
m1, m2 = statistics.median(one), statistics.median(two)
b = rows[0]["batch"]
print(f"{rows[0]['preset']} global batch {b}: 1 process {m1:.3f} s/step ({b / m1:.2f} img/s), "
      f"2 processes {m2:.3f} s/step ({b / m2:.2f} img/s): scaling {m1 / m2:.2f}x of 2.00 "
      f"({len(one)} and {len(two)} steps)")
ph = [r["phases_s"] for r in rows if r["world"] == 2 and r["rank"] == 0 and r["phases_s"]]
if ph:
    med = {k: statistics.median(p[k] for p in ph) for k in ph[0]}
    total = sum(med.values())
    print("2 processes, rank 0, phases of a step timed apart (median s): "
          + ", ".join(f"{k} {v:.3f}" for k, v in med.items())
          + f"; the gradient all-reduce is {100 * med['grad_all_reduce'] / total:.1f} % of their sum")
PY
