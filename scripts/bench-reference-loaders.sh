#!/usr/bin/env bash
# The loader's CPU path (augment_on=cpu, batch 64 of 224² pairs) beside the other loaders, same
# run, same images, same cores: NVIDIA DALI's CPU pipeline of the mocov3_vit recipe
# (python/bench_dali.py), and FFCV on the part of the recipe FFCV's transforms have
# (python/bench_ffcv.py; twoview then runs configs/recipe-ffcv-subset.toml). Images: 1,000
# imagenette photos re-encoded at 500x375 (ImageNet-sized), stored at short side 256 (341x256) --
# raw and JPEG q90 shards for twoview; for DALI the same 341x256 pictures as JPEG q90 files (its
# file reader + libjpeg-turbo decode) and as decoded pixels through an external source; for FFCV
# .beton files of them (write_mode raw / jpg q90). 1 and 2 threads; twoview at the CPU's best
# SIMD level and at AVX2 (TWOVIEW_SIMD=avx2); each figure the median of ROUNDS runs, alternated.
# DALI (nvidia-dali-cuda130, CPU only here) and FFCV go into their own venv under
# .cache/ref-venv, not the project's; FFCV builds against Debian's OpenCV and TurboJPEG.
# Usage: scripts/bench-reference-loaders.sh [ROUNDS] [DATA]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
rounds=${1:-3}
data=${2:-$root/../shared/datasets/imagenette224}
scripts/setup-venv.sh
. scripts/env.sh
cargo build --release --locked -p twoview-tools >/dev/null
bin=target/release/twoview
ref=.cache/ref-venv
if ! "$ref/bin/python" -c 'import nvidia.dali, ffcv' 2>/dev/null; then
  echo "bench-reference-loaders: installing DALI and FFCV into $ref"
  dpkg -s libopencv-dev libturbojpeg0-dev pkg-config >/dev/null 2>&1 \
    || { apt-get update -q && apt-get install -y -q pkg-config libopencv-dev libturbojpeg0-dev; } >/dev/null
  python3 -m venv "$ref"
  "$ref/bin/pip" install --quiet nvidia-dali-cuda130==2.4.0 ffcv==1.0.2 numpy==2.3.5 pillow==12.0.0
fi
work=$(mktemp -d /tmp/twoview-bench-ref-loaders.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
echo "DALI $("$ref/bin/python" -c 'import nvidia.dali as d; print(d.__version__)'), FFCV $("$ref/bin/pip" show ffcv | sed -n 's/^Version: //p')"
.venv/bin/python python/bench_decode.py make "$data/train" "$work/inet/c" 1000 --size 500x375 >/dev/null
"$bin" prep-shards "$work/inet" --out "$work/raw" >/dev/null 2>&1
"$bin" prep-shards "$work/inet" --out "$work/jpeg" --encoding jpeg >/dev/null 2>&1
# DALI's inputs: the same photos at the shards' stored size (short side 256), JPEG q90.
.venv/bin/python - "$work/inet" "$work/dali/c" <<'PY'
import glob, os, sys
from PIL import Image
os.makedirs(sys.argv[2], exist_ok=True)
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*", "*"))):
    im = Image.open(f).convert("RGB")
    w, h = im.size
    s = 256 / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.BILINEAR, reducing_gap=None)
    im.save(os.path.join(sys.argv[2], os.path.basename(f)), quality=90)
PY
"$ref/bin/python" python/bench_ffcv.py write "$work/dali" "$work/ffcv-raw.beton" --mode raw >/dev/null 2>&1
"$ref/bin/python" python/bench_ffcv.py write "$work/dali" "$work/ffcv-jpeg.beton" --mode jpg >/dev/null 2>&1
subset=configs/recipe-ffcv-subset.toml
res=$work/results.jsonl
for r in $(seq "$rounds"); do
  for t in 1 2; do
    for set in raw jpeg; do
      "$bin" bench loader "$work/$set" --threads $t --batches 40 --label "best-$set" | sed -n 's/^JSON //p' >> "$res"
      TWOVIEW_SIMD=avx2 "$bin" bench loader "$work/$set" --threads $t --batches 40 --label "avx2-$set" | sed -n 's/^JSON //p' >> "$res"
      "$ref/bin/python" python/bench_dali.py --$set "$work/dali" --threads $t --batches 20 --label "dali-$set" \
        | sed -n 's/^JSON //p' >> "$res"
      "$bin" bench loader "$work/$set" --threads $t --batches 40 --recipe $subset --label "sub-best-$set" | sed -n 's/^JSON //p' >> "$res"
      TWOVIEW_SIMD=avx2 "$bin" bench loader "$work/$set" --threads $t --batches 40 --recipe $subset --label "sub-avx2-$set" | sed -n 's/^JSON //p' >> "$res"
      "$ref/bin/python" python/bench_ffcv.py read "$work/ffcv-$set.beton" --workers $t --batches 30 --label "ffcv-$set" \
        | sed -n 's/^JSON //p' >> "$res"
    done
  done
  echo "round $r of $rounds done"
done
python3 - "$res" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(label, t):
    v = [r["pairs_per_s"] for r in rows if r["label"] == label and r["threads"] == t]
    return statistics.median(v), v
for title, tv, other in [("mocov3_vit: twoview vs DALI CPU", "", "dali"),
                         ("the FFCV subset: twoview vs FFCV", "sub-", "ffcv")]:
    print(f"\n{title}\n")
    print(f"| shards | threads | twoview best SIMD | twoview AVX2 | {other} | best / {other} | AVX2 / {other} |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for s in ["raw", "jpeg"]:
        for t in [1, 2]:
            b, bv = med(f"{tv}best-{s}", t); a, av = med(f"{tv}avx2-{s}", t); d, dv = med(f"{other}-{s}", t)
            print(f"| {s} | {t} | {b:,.0f} | {a:,.0f} | {d:,.0f} | {b / d:.1f}x | {a / d:.1f}x |")
            print(f"  (runs: best {[round(x) for x in bv]}, avx2 {[round(x) for x in av]}, {other} {[round(x) for x in dv]})", file=sys.stderr)
PY
