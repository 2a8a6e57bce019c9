#!/usr/bin/env python3
"""Writes what twoview.Loader (the Python bindings) hands out, for the comparison with the Rust
loader (tests/integration/python_loader.rs).

usage: loader_batches.py SHARDS OUT --batch-size B --size S --seed N --rank R --world-size W
                         --epoch E --batch K --batches N --threads T
  OUT.bin: the views of N batches from cursor (E, K), concatenated ([B, 2, S, S, 3] u8 each)
  OUT.json: per batch its rows, labels, cursor and next cursor
"""
import argparse
import json

import twoview


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shards")
    ap.add_argument("out")
    for name in ("batch-size", "size", "seed", "rank", "world-size", "epoch", "batch", "batches", "threads"):
        ap.add_argument(f"--{name}", type=int, required=True)
    a = ap.parse_args()
    loader = twoview.Loader(a.shards, batch_size=a.batch_size, size=a.size, seed=a.seed, rank=a.rank,
                            world_size=a.world_size, threads=a.threads,
                            cursor={"epoch": a.epoch, "batch": a.batch})
    meta = []
    with open(a.out + ".bin", "wb") as f:
        while len(meta) < a.batches:
            for b in loader:
                f.write(b.views.numpy().tobytes())
                meta.append({"rows": b.indices.tolist(), "labels": b.labels.tolist(),
                             "cursor": b.cursor, "next_cursor": b.next_cursor})
                if len(meta) == a.batches:
                    break
    loader.close()
    with open(a.out + ".json", "w") as f:
        json.dump(meta, f)


if __name__ == "__main__":
    main()
