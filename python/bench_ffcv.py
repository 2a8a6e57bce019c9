#!/usr/bin/env python3
"""FFCV's side of scripts/bench-ffcv.sh: two views per image from an FFCV .beton file, pairs/s
end to end, for the loader comparison of issue 17.

FFCV 1.0's transforms cover only part of the MoCo v3 recipe (no hue, grayscale, blur or
solarize), so both sides run that part (configs/recipe-ffcv-subset.toml on twoview's): per view
RandomResizedCropRGBImageDecoder 224 (scale 0.08-1, ratio 3/4-4/3; decode, crop and resize in one
step), brightness 0.4, contrast 0.4, saturation 0.2 each with p 0.8, horizontal flip p 0.5. Two
views of one stored image: two pipelines on the same field (PipelineSpec), each decoding it, as
FFCV does it. Output: uint8 [B, 224, 224, 3] numpy batches.

usage: bench_ffcv.py write IMAGE_DIR OUT.beton --mode raw|jpg
       bench_ffcv.py read FILE.beton --workers N [--batch 64] [--batches 40] [--label L]
"""
import argparse
import glob
import json
import os
import time

import numpy as np
from PIL import Image


def write(folder, out, mode):
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    files = sorted(glob.glob(os.path.join(folder, "**", "*.*"), recursive=True))

    class Images:
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            return np.asarray(Image.open(files[i]).convert("RGB")), 0

    fields = {"image": RGBImageField(write_mode=mode, jpeg_quality=90), "label": IntField()}
    DatasetWriter(out, fields, num_workers=2).from_indexed_dataset(Images())


def pipeline():
    from ffcv.fields.decoders import RandomResizedCropRGBImageDecoder
    from ffcv.transforms import RandomBrightness, RandomContrast, RandomHorizontalFlip, \
        RandomSaturation

    decoder = RandomResizedCropRGBImageDecoder((224, 224), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    return decoder, [RandomBrightness(0.4, p=0.8), RandomContrast(0.4, p=0.8),
                     RandomSaturation(0.2, p=0.8), RandomHorizontalFlip(0.5)]


def read(a):
    from ffcv.loader import Loader, OrderOption
    from ffcv.pipeline import PipelineSpec

    d1, t1 = pipeline()
    d2, t2 = pipeline()
    loader = Loader(a.file, batch_size=a.batch, num_workers=a.workers, order=OrderOption.RANDOM,
                    drop_last=True, seed=1, batches_ahead=3,
                    pipelines={"image": PipelineSpec("image", decoder=d1, transforms=t1),
                               "image2": PipelineSpec("image", decoder=d2, transforms=t2),
                               "label": None})
    done, t, wall = 0, None, 0.0
    while done < a.batches + 3:
        for v1, v2 in loader:
            if done == 3:
                t = time.perf_counter()
            assert v1.shape == (a.batch, 224, 224, 3) and v1.dtype == np.uint8
            done += 1
            if done == a.batches + 3:
                wall = time.perf_counter() - t
                break
    r = {"impl": "ffcv", "label": a.label, "threads": a.workers,
         "pairs_per_s": a.batches * a.batch / wall}
    print(f"FFCV, {a.workers} workers: {r['pairs_per_s']:.0f} pairs/s")
    print("JSON " + json.dumps(r))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("folder")
    w.add_argument("out")
    w.add_argument("--mode", choices=["raw", "jpg"], required=True)
    r = sub.add_parser("read")
    r.add_argument("file")
    r.add_argument("--workers", type=int, default=1)
    r.add_argument("--batch", type=int, default=64)
    r.add_argument("--batches", type=int, default=40)
    r.add_argument("--label", default="")
    a = ap.parse_args()
    if a.cmd == "write":
        write(a.folder, a.out, a.mode)
    else:
        read(a)


if __name__ == "__main__":
    main()
