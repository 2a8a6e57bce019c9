"""One MoCo v3 training step of the PyTorch reference (python/moco_reference.py: timm ViT +
heads, `torch.optim.AdamW(foreach=True)`), timed like `twoview bench train-step`, printing one
JSON line; `--phases` also times views, forward, backward, optimizer and the loss read on extra
steps.

    python bench_train.py --preset vit_small --image 224 --batch 8 --threads 2
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moco_reference import MocoV3, normalize_views  # noqa: E402

PRESETS = {"vit_tiny": (192, 12, 3), "vit_small": (384, 12, 12), "vit_base": (768, 12, 12)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="vit_tiny")
    ap.add_argument("--image", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--phases", action="store_true")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dim, depth, heads = PRESETS[a.preset]
    torch.manual_seed(0)
    model = MocoV3(a.image, 16, dim, depth, heads, 4096, 256)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1, foreach=True)
    torch.manual_seed(1)
    batch = torch.randint(0, 256, (a.batch, 2, a.image, a.image, 3), dtype=torch.uint8)
    times = []
    for i in range(a.warmup + a.steps):
        t = time.perf_counter()
        x1, x2 = normalize_views(batch)
        loss, *_ = model(x1, x2, 0.99)
        loss.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    phases = {}
    if a.phases:
        laps = {k: [] for k in ("views", "forward", "backward", "optimizer", "read")}
        for _ in range(a.steps):
            t = time.perf_counter()

            def lap(k):
                nonlocal t
                laps[k].append(time.perf_counter() - t)
                t = time.perf_counter()

            x1, x2 = normalize_views(batch)
            lap("views")
            loss, *_ = model(x1, x2, 0.99)
            lap("forward")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            lap("backward")
            opt.step()
            lap("optimizer")
            loss.item()
            lap("read")
        phases = {k: statistics.median(v) for k, v in laps.items()}
    print(json.dumps({"impl": "pytorch", "preset": a.preset, "image": a.image, "batch": a.batch,
                      "threads": torch.get_num_threads(), "step_s_median": med, "step_s": times,
                      "img_per_s": a.batch / med, "phases_s": phases}))


if __name__ == "__main__":
    main()
