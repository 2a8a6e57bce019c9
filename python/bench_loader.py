#!/usr/bin/env python3
"""torchvision side of scripts/bench-loader.sh: the moco-v3 reference loader -- ImageFolder over
the JPEG files (PIL decode), TwoCropsTransform with ToTensor + Normalize (bench_augment.views),
torch DataLoader with N worker processes, batch 64, shuffle, drop_last -- timed end to end.

usage: bench_loader.py TRAIN_DIR --workers N [--batches 30]
"""
import argparse
import json
import sys
import time
import os

import torch
import torchvision.datasets as datasets

sys.path.insert(0, os.path.dirname(__file__))
from bench_augment import views  # noqa: E402


class TwoCrops:
    def __init__(self, tf):
        self.tf = tf

    def __call__(self, x):
        return self.tf(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("train_dir")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=30)
    a = ap.parse_args()
    torch.set_num_threads(1)
    ds = datasets.ImageFolder(a.train_dir, TwoCrops(views(224, True)))
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True, num_workers=a.workers,
                                     drop_last=True, persistent_workers=True, prefetch_factor=4)
    it = iter(dl)
    for _ in range(3):
        next(it)
    t = time.perf_counter()
    for _ in range(a.batches):
        (v1, v2), _ = next(it)
    wall = time.perf_counter() - t
    r = {"impl": "torchvision", "workers": a.workers, "pairs_per_s": a.batches * a.batch / wall}
    print(f"torchvision DataLoader, {a.workers} workers: {r['pairs_per_s']:.0f} pairs/s")
    print("JSON " + json.dumps(r))


if __name__ == "__main__":
    main()
