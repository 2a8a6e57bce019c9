#!/usr/bin/env python3
"""DALI's CPU side of scripts/bench-dali.sh: the moco-v3 ViT two-view recipe as a DALI pipeline on
the CPU (no GPU: device_id=None), pairs/s end to end, for the loader comparison of issue 17.

Each image is decoded once (fn.decoders.image, libjpeg-turbo) and cropped twice, as twoview and
torchvision do; per view: RandomResizedCrop 224 (scale 0.08-1, ratio 3/4-4/3, antialiased
linear), horizontal flip p 0.5, colour jitter (brightness 0.4, contrast 0.4, saturation 0.2, hue
0.1) p 0.8 in DALI's fixed order (fn.color_twist; torchvision's random order has no DALI
equivalent), grayscale p 0.2, Gaussian blur sigma 0.1-2 with p 1.0 / 0.1, solarize p 0 / 0.2
(arithmetic: DALI has no solarize op). Output: uint8 HWC views, as twoview's loader gives them
(normalisation happens on the training device in both).

Sources: `--jpeg DIR` reads JPEG files (fn.readers.file, DALI's own path); `--raw DIR` decodes the
files once up front and feeds the pixels through an external source (DALI's nearest to raw
shards).

usage: bench_dali.py (--jpeg DIR | --raw DIR) --threads N [--batch 64] [--batches 40]
"""
import argparse
import glob
import json
import os
import time

import numpy as np
from nvidia.dali import fn, pipeline_def, types
from PIL import Image


def view(img, blur_p, solarize_p):
    img = fn.random_resized_crop(img, size=[224, 224], random_area=[0.08, 1.0],
                                 random_aspect_ratio=[3 / 4, 4 / 3], antialias=True,
                                 interp_type=types.INTERP_LINEAR)
    img = fn.flip(img, horizontal=fn.random.coin_flip(probability=0.5))
    if fn.random.coin_flip(probability=0.8):
        img = fn.color_twist(img,
                             brightness=fn.random.uniform(range=[0.6, 1.4]),
                             contrast=fn.random.uniform(range=[0.6, 1.4]),
                             saturation=fn.random.uniform(range=[0.8, 1.2]),
                             hue=fn.random.uniform(range=[-36.0, 36.0]))  # 0.1 of the circle
    if fn.random.coin_flip(probability=0.2):
        img = fn.color_twist(img, saturation=0.0)
    if blur_p >= 1.0 or fn.random.coin_flip(probability=blur_p):
        img = fn.gaussian_blur(img, sigma=fn.random.uniform(range=[0.1, 2.0]))
    if solarize_p > 0 and fn.random.coin_flip(probability=solarize_p):
        x = fn.cast(img, dtype=types.INT16)
        img = fn.cast(x + (x >= 128) * (255 - 2 * x), dtype=types.UINT8)
    return img


def pipeline(source, threads, batch, files):
    @pipeline_def(batch_size=batch, num_threads=threads, device_id=None, seed=1,
                  enable_conditionals=True, prefetch_queue_depth=2)
    def two_views():
        if source == "jpeg":
            jpegs, _ = fn.readers.file(files=files, random_shuffle=True, name="reader")
            img = fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)
        else:
            img = fn.external_source(source=files, cycle=True, batch=False, layout="HWC")
        return view(img, 1.0, 0.0), view(img, 0.1, 0.2)

    return two_views()


def main():
    ap = argparse.ArgumentParser()
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--jpeg")
    src.add_argument("--raw")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    folder = a.jpeg or a.raw
    files = sorted(glob.glob(os.path.join(folder, "**", "*.*"), recursive=True))
    if not files:
        raise SystemExit(f"bench_dali: no files under {folder}")
    if a.raw:
        pixels = [np.asarray(Image.open(f).convert("RGB")) for f in files]
        p = pipeline("raw", a.threads, a.batch, pixels)
    else:
        p = pipeline("jpeg", a.threads, a.batch, files)
    p.build()
    for _ in range(3):
        p.run()
    t = time.perf_counter()
    for _ in range(a.batches):
        v1, v2 = p.run()
        assert v1.as_array().shape == (a.batch, 224, 224, 3)
    wall = time.perf_counter() - t
    r = {"impl": "dali-cpu", "source": "jpeg" if a.jpeg else "raw", "threads": a.threads,
         "label": a.label, "pairs_per_s": a.batches * a.batch / wall}
    print(f"DALI CPU, {r['source']} sources, {a.threads} threads: {r['pairs_per_s']:.0f} pairs/s")
    print("JSON " + json.dumps(r))


if __name__ == "__main__":
    main()
