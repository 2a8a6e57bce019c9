#!/usr/bin/env bash
# Two-view augmentation throughput, twoview beside torchvision+PIL (moco-v3's TwoCropsTransform)
# in the same run on the same images, one thread each. Usage: scripts/bench-augment.sh [IMAGES]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
images=${1:-$root/../shared/datasets/imagenette224/train}
scripts/setup-venv.sh
. scripts/env.sh
cargo build --release --locked -p twoview-tools >/dev/null
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
bench() { taskset -c 0 target/release/twoview bench augment "$images" --pairs 1000 | tee >(cat >&2) | sed -n 's/^JSON //p'; }
ours=$(bench)
# What a CPU without AVX-512 gets (same binary, dispatch capped).
ours_avx2=$(TWOVIEW_SIMD=avx2 bench)
theirs=$(OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python python/bench_augment.py "$images" --pairs 300 | sed -n 's/^JSON //p')
.venv/bin/python - "$ours" "$ours_avx2" "$theirs" <<'PY'
import json, sys
o, a, t = (json.loads(x) for x in sys.argv[1:4])
tv = t["pairs_per_s_pil_only"]
print(f"\n| | twoview ({o['simd']}) | twoview ({a['simd']}) | torchvision+PIL | ratio ({o['simd']} / {a['simd']}) |")
print("|---|---:|---:|---:|---:|")
print(f"| mocov3_vit pairs/s, 1 core | {o['pairs_per_s']:.0f} | {a['pairs_per_s']:.0f} | {tv:.0f} "
      f"(+ToTensor/Normalize: {t['pairs_per_s_with_totensor_normalize']:.0f}) | "
      f"{o['pairs_per_s'] / tv:.1f}x / {a['pairs_per_s'] / tv:.1f}x |")
for k, v in o["op_us"].items():
    va, vt = a["op_us"][k], t["op_us"][k]
    print(f"| {k} (us per 224x224 view) | {v:.1f} | {va:.1f} | {vt:.1f} | {vt / v:.1f}x / {vt / va:.1f}x |")
PY
