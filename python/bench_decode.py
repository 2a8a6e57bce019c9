#!/usr/bin/env python3
"""Pillow side of scripts/bench-decode.sh, and the maker of its ImageNet-sized JPEGs.

  bench_decode.py make SRC_DIR OUT_DIR N   N photos from SRC_DIR re-encoded at 500x375 (or 375x500
                                           for portrait), quality 90, 4:2:0 -- ImageNet-like files
  bench_decode.py run DIR --short-side S --label L
                                           one thread, files read into memory first; prints
                                           images/s for Image.open().convert("RGB") (decode),
                                           + resize to shorter side S bilinear (torchvision's
                                           Resize(S) sizes), and the same with Image.draft()
                                           (Pillow's DCT scaling), as a JSON line
"""
import argparse
import io
import json
import os
import sys

from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from bench_augment import per_call  # noqa: E402  (median of 5 runs, same as the augment bench)


def files_under(d, n):
    out = []
    for dp, dn, fn in os.walk(d):
        dn.sort()
        for f in sorted(fn):
            if f.lower().endswith((".jpg", ".jpeg", ".png")):
                out.append(os.path.join(dp, f))
    return out[:n]


def make(src, out, n, w, h):
    os.makedirs(out, exist_ok=True)
    paths = files_under(src, 10**9)
    step = max(1, len(paths) // n)
    for i, p in enumerate(paths[::step][:n]):
        im = Image.open(p).convert("RGB")
        size = (w, h) if i % 4 else (h, w)
        im.resize(size, Image.BICUBIC).save(os.path.join(out, f"{i:04d}.JPEG"), quality=90, subsampling=2)


def target(w, h, s):
    # torchvision Resize(s): shorter side s, longer int(s * long / short); never upscale here.
    short, long_ = min(w, h), max(w, h)
    if short <= s:
        return w, h
    nl = int(s * long_ / short)
    return (s, nl) if w <= h else (nl, s)


def run(d, s, label):
    blobs = [open(p, "rb").read() for p in files_under(d, 200)]
    n = len(blobs)
    calls = max(n, 100)

    def decode(i):
        return Image.open(io.BytesIO(blobs[i % n])).convert("RGB")

    def decode_resize(i):
        im = decode(i)
        return im.resize(target(im.width, im.height, s), Image.BILINEAR)

    def draft_resize(i):
        im = Image.open(io.BytesIO(blobs[i % n]))
        full = im.size
        w, h = target(full[0], full[1], s)
        im.draft("RGB", (w, h))  # largest DCT scale that stays >= the requested size
        return im.convert("RGB").resize((w, h), Image.BILINEAR)

    r = {
        "impl": "pillow",
        "label": label,
        "decode": 1 / per_call(calls, decode),
        "decode_resize": 1 / per_call(calls, decode_resize),
        "decode_resize_draft": 1 / per_call(calls, draft_resize),
    }
    print(f"pillow {Image.__version__}: " + ", ".join(f"{k} {v:.0f}/s" for k, v in r.items() if isinstance(v, float)))
    print("JSON " + json.dumps(r))


def table(sets):
    """Markdown table from the JSON lines on stdin (twoview, pillow and twoview-prep rows)."""
    import sys

    rows = [json.loads(line) for line in sys.stdin if line.strip()]
    by = {(r["impl"], r["label"]): r for r in rows}
    print("\n| images/s, 1 core | set | twoview | Pillow 12 | ratio |\n|---|---|---:|---:|---:|")
    for spec in sets:
        label, desc = spec.split("=", 1)
        o, p = by[("twoview", label)], by[("pillow", label)]
        line = lambda what, a, b: print(f"| {what} | {desc} | {a:.0f} | {b:.0f} | {a / b:.2f}x |")
        line("decode", o["decode"], p["decode"])
        print(f"| decode, image crate (zune-jpeg), for the record | {desc} | {o['decode_image_crate']:.0f} | | {o['decode_image_crate'] / o['decode']:.2f}x of ours |")
        line("decode + resize, full-size decode", o["decode_resize"], p["decode_resize"])
        line("decode + resize, DCT scaling (Pillow: draft)", o["decode_resize_dct"], p["decode_resize_draft"])
        line("decode + resize, our default (DCT) vs Pillow plain", o["decode_resize_dct"], p["decode_resize"])
        print(f"| whole prep-shards: read, decode, resize, write raw + fsync | {desc} | {by[('twoview-prep', label)]['images_per_s']:.0f} | | |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("src")
    m.add_argument("out")
    m.add_argument("n", type=int)
    m.add_argument("--size", default="500x375")
    t = sub.add_parser("table")
    t.add_argument("sets", nargs="+", help="label=description")
    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("--short-side", type=int, default=256)
    r.add_argument("--label", default="images")
    a = ap.parse_args()
    if a.cmd == "make":
        make(a.src, a.out, a.n, *map(int, a.size.split("x")))
    elif a.cmd == "run":
        run(a.dir, a.short_side, a.label)
    else:
        table(a.sets)
