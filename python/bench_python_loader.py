#!/usr/bin/env python3
"""Python side of scripts/bench-python.sh: twoview.Loader (the bindings) timed as `twoview bench
loader` times the Rust loader -- batch 64 of 224x224 pairs, mocov3_vit, prefetch 4, 3 warm-up
batches, then N batches, each touched as torch tensors would be (views[:, 0], views[:, 1]).

usage: bench_python_loader.py SHARDS --threads T [--batches 60] [--label L]
"""
import argparse
import json
import time

import torch

import twoview


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shards")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--label", default="python")
    a = ap.parse_args()
    torch.set_num_threads(1)
    loader = twoview.Loader(a.shards, batch_size=a.batch, size=224, threads=a.threads, prefetch=4)

    def batches():
        while True:
            yield from loader

    it = batches()
    for _ in range(3):
        next(it)
    t = time.perf_counter()
    pairs = 0
    for _ in range(a.batches):
        b = next(it)
        x1, x2 = b.views[:, 0], b.views[:, 1]
        pairs += x1.shape[0]
        del b, x1, x2
    wall = time.perf_counter() - t
    rate = pairs / wall
    print(f"python loader: {a.threads} worker threads, batch {a.batch}: {rate:.0f} pairs/s")
    print("JSON " + json.dumps({"impl": "twoview-python", "label": a.label, "threads": a.threads,
                                "pairs_per_s": round(rate, 1)}))
    loader.close()


if __name__ == "__main__":
    main()
