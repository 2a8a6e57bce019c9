#!/usr/bin/env python3
"""Reference outputs for twoview's augmentation ops, from torchvision 0.26 on PIL images (the
path the moco-v3 reference loader takes) and PIL's own filters.

Run by the Rust test `tests/integration/augment_fidelity.rs` in the project venv:

  ops   --images A.JPEG B.JPEG ... --out DIR
        Decodes each image with PIL, writes it raw (DIR/src-K.rgb) so both sides start from the
        same pixels, applies every op case with fixed parameters, writes each result raw and
        DIR/cases.json describing them.
  crops --width W --height H --scale LO HI --n N --out FILE
        N boxes (top, left, height, width) from torchvision's RandomResizedCrop.get_params.
  draws --n N --out FILE
        N pairs of moco-v3's random draws after the crop, made by the reference's own code in
        main_moco.py's order: RandomApply(ColorJitter(.4, .4, .2, .1), p=.8) (torchvision's coin
        and ColorJitter.get_params), RandomGrayscale(.2), RandomApply(GaussianBlur, p=1 | .1)
        (moco-v3's sigma = random.uniform(.1, 2)), view 2's RandomApply(Solarize, p=.2),
        RandomHorizontalFlip().
  views --images A.JPEG ... --short S --size V --n N --out DIR
        moco-v3's two view pipelines (main_moco.py augmentation1/2, torchvision + PIL) applied N
        times to sources resized (PIL bilinear) to short side S, written raw as DIR/src-K.rgb;
        DIR/stats.json has per view and draw: channel means and stds, mean HSV saturation,
        grayscale or not, mean |Laplacian| of the luma (a sharpness proxy), and the crop's area
        fraction, log aspect ratio and centre x (fraction of the width).
"""
import argparse
import math
import json
import os

import numpy as np
import torch
import torchvision
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image, ImageFilter, ImageOps

assert torchvision.__version__.startswith("0.26"), torchvision.__version__


def f32(x):
    """torchvision draws its factors as float32 tensors; pass the same values."""
    return float(np.float32(x))


def cases():
    yield "crop_resize", {"top": 10, "left": 20, "height": 150, "width": 180, "out_w": 224, "out_h": 224}
    yield "crop_resize", {"top": 0, "left": 0, "height": 224, "width": 224, "out_w": 96, "out_h": 96}
    yield "crop_resize", {"top": 50, "left": 60, "height": 40, "width": 30, "out_w": 160, "out_h": 128}
    yield "crop_resize", {"top": 3, "left": 1, "height": 200, "width": 97, "out_w": 224, "out_h": 224}
    # Flush with the bottom-right of the 224x224 corner, one pixel, width or height unchanged (PIL
    # skips that pass), a 1.49x downscale, a sliver.
    yield "crop_resize", {"top": 24, "left": 24, "height": 200, "width": 200, "out_w": 224, "out_h": 224}
    yield "crop_resize", {"top": 100, "left": 7, "height": 1, "width": 1, "out_w": 224, "out_h": 224}
    yield "crop_resize", {"top": 0, "left": 1, "height": 224, "width": 223, "out_w": 224, "out_h": 224}
    yield "crop_resize", {"top": 30, "left": 0, "height": 150, "width": 224, "out_w": 224, "out_h": 224}
    yield "crop_resize", {"top": 0, "left": 0, "height": 224, "width": 224, "out_w": 150, "out_h": 150}
    yield "crop_resize", {"top": 5, "left": 200, "height": 219, "width": 17, "out_w": 224, "out_h": 224}
    yield "hflip", {}
    for f in (0.6, 1.0, 1.37):
        yield "brightness", {"factor": f32(f)}
    for f in (0.6, 1.25, 1.4):
        yield "contrast", {"factor": f32(f)}
    for f in (0.0, 0.8, 1.2):
        yield "saturation", {"factor": f32(f)}
    for f in (-0.1, -0.03, 0.0, 0.05, 0.1, 0.5):
        yield "hue", {"factor": f32(f)}
    yield "grayscale", {}
    for s in (0.1, 0.5, 1.0, 1.3, 2.0):
        yield "blur", {"sigma": f32(s)}
    yield "solarize", {"threshold": 128}
    # The four jitter ops composed in one drawn order, as ColorJitter.forward applies them.
    yield "jitter", {"order": [2, 0, 3, 1], "brightness": f32(1.2), "contrast": f32(0.7),
                     "saturation": f32(1.1), "hue": f32(0.05)}


def apply(img, op, p):
    if op == "crop_resize":
        return F.resized_crop(img, p["top"], p["left"], p["height"], p["width"], [p["out_h"], p["out_w"]],
                              interpolation=T.InterpolationMode.BILINEAR, antialias=True)
    if op == "hflip":
        return F.hflip(img)
    if op == "brightness":
        return F.adjust_brightness(img, p["factor"])
    if op == "contrast":
        return F.adjust_contrast(img, p["factor"])
    if op == "saturation":
        return F.adjust_saturation(img, p["factor"])
    if op == "hue":
        return F.adjust_hue(img, p["factor"])
    if op == "grayscale":
        return F.rgb_to_grayscale(img, num_output_channels=3)
    if op == "blur":  # moco-v3 loader.GaussianBlur
        return img.filter(ImageFilter.GaussianBlur(radius=p["sigma"]))
    if op == "solarize":  # moco-v3 loader.Solarize
        return ImageOps.solarize(img, threshold=p["threshold"])
    if op == "jitter":
        fns = [lambda x: F.adjust_brightness(x, p["brightness"]), lambda x: F.adjust_contrast(x, p["contrast"]),
               lambda x: F.adjust_saturation(x, p["saturation"]), lambda x: F.adjust_hue(x, p["hue"])]
        for i in p["order"]:
            img = fns[i](img)
        return img
    raise ValueError(op)


def write_rgb(img, path):
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    arr.tofile(path)
    return arr.shape[1], arr.shape[0]


def cmd_ops(args):
    os.makedirs(args.out, exist_ok=True)
    out = []
    for k, path in enumerate(args.images):
        img = Image.open(path).convert("RGB")
        w, h = write_rgb(img, os.path.join(args.out, f"src-{k}.rgb"))
        for n, (op, p) in enumerate(cases()):
            res = apply(img, op, p)
            name = f"out-{k}-{n}.rgb"
            ow, oh = write_rgb(res, os.path.join(args.out, name))
            out.append({"image": k, "src": f"src-{k}.rgb", "src_w": w, "src_h": h, "op": op, "params": p,
                        "out": name, "out_w": ow, "out_h": oh})
    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump(out, f, indent=1)


def cmd_crops(args):
    torch.manual_seed(args.seed)
    img = torch.empty(3, args.height, args.width)
    boxes = [T.RandomResizedCrop.get_params(img, tuple(args.scale), (3 / 4, 4 / 3)) for _ in range(args.n)]
    with open(args.out, "w") as f:
        json.dump(boxes, f)


def cmd_draws(args):
    import random
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    cj = T.ColorJitter(0.4, 0.4, 0.2, 0.1)
    views = {1: [], 2: []}
    for _ in range(args.n):
        for v in (1, 2):
            d = {}
            # RandomApply: `if self.p < torch.rand(1): return img`.
            d["jitter"] = not (0.8 < torch.rand(1))
            if d["jitter"]:
                order, b, c, s_, h = T.ColorJitter.get_params(cj.brightness, cj.contrast, cj.saturation, cj.hue)
                d.update(order=[int(i) for i in order], b=float(b), c=float(c), s=float(s_), h=float(h))
            d["gray"] = bool(torch.rand(1) < 0.2)  # RandomGrayscale
            d["blur"] = not ((1.0 if v == 1 else 0.1) < torch.rand(1))
            if d["blur"]:
                d["sigma"] = random.uniform(0.1, 2.0)  # moco-v3's GaussianBlur
            if v == 2:
                d["solarize"] = not (0.2 < torch.rand(1))
            d["flip"] = bool(torch.rand(1) < 0.5)  # RandomHorizontalFlip
            views[v].append(d)
    with open(args.out, "w") as f:
        json.dump(views, f)


def view_stats(a):
    """[r, g, b mean, r, g, b std, saturation, gray, sharpness] of a u8 HWC array."""
    x = a.astype(np.float64)
    mx, mn = x.max(axis=2), x.min(axis=2)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1), 0).mean()
    gray = float(bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()))
    y = x @ np.array([0.299, 0.587, 0.114])
    lap = np.abs(4 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]).mean()
    return [*x.mean(axis=(0, 1)), *x.std(axis=(0, 1)), sat, gray, lap]


def cmd_views(args):
    import random
    torch.manual_seed(args.seed)
    random.seed(args.seed)

    class Blur:
        def __call__(self, x):
            return x.filter(ImageFilter.GaussianBlur(radius=random.uniform(0.1, 2.0)))

    class Solarize:
        def __call__(self, x):
            return ImageOps.solarize(x)

    def crop(img):
        # RandomResizedCrop.forward, spelled out to record the box: get_params, then resized_crop.
        i, j, h, w = T.RandomResizedCrop.get_params(img, (0.08, 1.0), (3 / 4, 4 / 3))
        box = [i, j, h, w]
        return F.resized_crop(img, i, j, h, w, [args.size, args.size],
                              T.InterpolationMode.BILINEAR, antialias=True), box

    jitter = T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8)
    rest1 = T.Compose([jitter, T.RandomGrayscale(p=0.2), T.RandomApply([Blur()], p=1.0),
                       T.RandomHorizontalFlip()])
    rest2 = T.Compose([jitter, T.RandomGrayscale(p=0.2), T.RandomApply([Blur()], p=0.1),
                       T.RandomApply([Solarize()], p=0.2), T.RandomHorizontalFlip()])

    def aug(rest, img):
        v, (i, j, h, w) = crop(img)
        W, H = img.size
        geometry = [h * w / (W * H), math.log(w / h), (j + w / 2) / W]
        return view_stats(np.asarray(rest(v))) + geometry
    os.makedirs(args.out, exist_ok=True)
    srcs = []
    for k, path in enumerate(args.images):
        im = Image.open(path).convert("RGB")
        w, h = im.size
        r = args.short / min(w, h)
        im = im.resize((max(1, round(w * r)), max(1, round(h * r))), Image.BILINEAR)
        write_rgb(im, os.path.join(args.out, f"src-{k}.rgb"))
        srcs.append({"w": im.size[0], "h": im.size[1], "img": im})
    stats = {"1": [], "2": []}
    for i in range(args.n):
        src = srcs[i % len(srcs)]["img"]
        stats["1"].append(aug(rest1, src))
        stats["2"].append(aug(rest2, src))
    with open(os.path.join(args.out, "stats.json"), "w") as f:
        json.dump({"sources": [{"w": s_["w"], "h": s_["h"]} for s_ in srcs], "views": stats}, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ops")
    a.add_argument("--images", nargs="+", required=True)
    a.add_argument("--out", required=True)
    b = sub.add_parser("crops")
    b.add_argument("--width", type=int, required=True)
    b.add_argument("--height", type=int, required=True)
    b.add_argument("--scale", type=float, nargs=2, required=True)
    b.add_argument("--n", type=int, default=20000)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--out", required=True)
    c = sub.add_parser("draws")
    c.add_argument("--n", type=int, default=100000)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", required=True)
    v = sub.add_parser("views")
    v.add_argument("--images", nargs="+", required=True)
    v.add_argument("--short", type=int, required=True)
    v.add_argument("--size", type=int, required=True)
    v.add_argument("--n", type=int, default=4000)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--out", required=True)
    args = ap.parse_args()
    {"ops": cmd_ops, "crops": cmd_crops, "draws": cmd_draws, "views": cmd_views}[args.cmd](args)


if __name__ == "__main__":
    main()
