#!/usr/bin/env python3
"""Pillow's view of every image under a folder, as the reference loader sees it.

For each .jpg/.jpeg/.jpe/.jfif/.png file under ROOT (any case, recursive, sorted) this does what
torchvision's ImageFolder does -- Image.open(path).convert("RGB"), EXIF orientation NOT applied --
and writes the result as OUT/<relative path>.png, plus one line of OUT/verdicts.tsv:

    path <TAB> ok <TAB> width <TAB> height        (decoded)
    path <TAB> error <TAB> ExceptionName: message  (Pillow refused it)

Pillow's own truncation and bomb checks stay at their defaults (LOAD_TRUNCATED_IMAGES = False).

usage: decode_reference.py ROOT OUT
"""
import os
import sys
import warnings

from PIL import Image

EXTS = {".jpg", ".jpeg", ".jpe", ".jfif", ".png"}


def main():
    root, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    warnings.simplefilter("ignore")
    with open(os.path.join(out, "verdicts.tsv"), "w") as tsv:
        for dp, dn, fn in os.walk(root):
            dn.sort()
            for f in sorted(fn):
                if os.path.splitext(f)[1].lower() not in EXTS:
                    continue
                p = os.path.join(dp, f)
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                rel = os.path.relpath(p, root)
                try:
                    with Image.open(p) as im:
                        rgb = im.convert("RGB")
                    dst = os.path.join(out, rel + ".png")
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    rgb.save(dst, compress_level=1)
                    tsv.write(f"{rel}\tok\t{rgb.width}\t{rgb.height}\n")
                except Exception as e:  # noqa: BLE001 -- every refusal is a verdict
                    msg = str(e).replace(p, rel).replace("\t", " ").replace("\n", " ")[:200]
                    tsv.write(f"{rel}\terror\t{type(e).__name__}: {msg}\n")


if __name__ == "__main__":
    main()
