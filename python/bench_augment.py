#!/usr/bin/env python3
"""torchvision + PIL side of `scripts/bench-augment.sh`: the moco-v3 reference loader's
TwoCropsTransform (main_moco.py augmentation1/augmentation2, loader.py GaussianBlur/Solarize)
on the same images as `twoview bench augment`, one thread, pairs/s and per-op cost."""
import argparse
import json
import os
import random
import statistics
import time

import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image, ImageFilter, ImageOps


class GaussianBlur:  # moco-v3 moco/loader.py
    def __init__(self, sigma=(0.1, 2.0)):
        self.sigma = sigma

    def __call__(self, x):
        return x.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.sigma[0], self.sigma[1])))


class Solarize:  # moco-v3 moco/loader.py
    def __call__(self, x):
        return ImageOps.solarize(x)


def views(size, tensor):
    normalize = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    tail = [T.ToTensor(), normalize] if tensor else []
    a1 = T.Compose([T.RandomResizedCrop(size, scale=(0.08, 1.0)),
                    T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), T.RandomGrayscale(p=0.2),
                    T.RandomApply([GaussianBlur([0.1, 2.0])], p=1.0), T.RandomHorizontalFlip()] + tail)
    a2 = T.Compose([T.RandomResizedCrop(size, scale=(0.08, 1.0)),
                    T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), T.RandomGrayscale(p=0.2),
                    T.RandomApply([GaussianBlur([0.1, 2.0])], p=0.1), T.RandomApply([Solarize()], p=0.2),
                    T.RandomHorizontalFlip()] + tail)
    return lambda x: [a1(x), a2(x)]


def per_call(calls, f):
    for i in range(min(calls, 20)):
        f(i)
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for i in range(calls):
            f(i)
        runs.append((time.perf_counter() - t) / calls)
    return statistics.median(runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("images")
    ap.add_argument("--n-images", type=int, default=64)
    ap.add_argument("--src-width", type=int, default=341)
    ap.add_argument("--src-height", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--pairs", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(1)
    paths = []
    for root, dirs, files in os.walk(args.images):
        dirs.sort()
        paths += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith((".jpg", ".jpeg", ".png"))]
        if len(paths) >= args.n_images:
            break
    paths = paths[: args.n_images]
    srcs = [Image.open(p).convert("RGB").resize((args.src_width, args.src_height), Image.BILINEAR) for p in paths]
    n = len(srcs)
    out = {"impl": "torchvision", "threads": 1}
    for tensor in (False, True):
        tf = views(args.size, tensor)
        s = per_call(args.pairs, lambda i: tf(srcs[i % n]))
        out["pairs_per_s_pil_only" if not tensor else "pairs_per_s_with_totensor_normalize"] = 1 / s
    rrc = T.RandomResizedCrop(args.size, scale=(0.08, 1.0))
    view = rrc(srcs[0])
    ops = {
        "crop_resize": lambda i: rrc(srcs[i % n]),
        "hflip": lambda i: F.hflip(view),
        "brightness": lambda i: F.adjust_brightness(view, 0.8 + (i % 2) * 0.4),
        "contrast": lambda i: F.adjust_contrast(view, 0.8 + (i % 2) * 0.4),
        "saturation": lambda i: F.adjust_saturation(view, 0.8 + (i % 2) * 0.4),
        "hue": lambda i: F.adjust_hue(view, 0.05 if i % 2 == 0 else -0.05),
        "grayscale": lambda i: F.rgb_to_grayscale(view, num_output_channels=3),
        "blur": lambda i: view.filter(ImageFilter.GaussianBlur(radius=0.1 + (i % 20) * 0.1)),
        "solarize": lambda i: ImageOps.solarize(view),
    }
    out["op_us"] = {k: per_call(args.pairs, f) * 1e6 for k, f in ops.items()}
    print("JSON " + json.dumps(out))


if __name__ == "__main__":
    main()
