#!/usr/bin/env python3
"""Pillow's view of every image under a folder, as the reference loader sees it.

For each .jpg/.jpeg/.jpe/.jfif/.png file under ROOT (any case, recursive, sorted) this does what
torchvision's ImageFolder does -- Image.open(path).convert("RGB"), EXIF orientation NOT applied --
and writes the result as OUT/<relative path>.png, plus one line of OUT/verdicts.tsv. JPEGs with
an EXIF orientation other than 1 also get OUT/<relative path>.oriented.png, made by
ImageOps.exif_transpose (what twoview's --exif-orientation must match).


    path <TAB> ok <TAB> width <TAB> height        (decoded)
    path <TAB> error <TAB> ExceptionName: message  (Pillow refused it)

Pillow's own truncation and bomb checks stay at their defaults (LOAD_TRUNCATED_IMAGES = False).

usage: decode_reference.py ROOT OUT
       decode_reference.py --make-odd PHOTO OUT_DIR
           writes variants of one photo that ImageNet-like folders hold: CMYK (Adobe, as Pillow
           and Photoshop write it), grayscale, progressive, 4:4:4, restart markers, a PNG named
           .JPEG, RGBA / palette / 16-bit PNGs
"""
import os
import sys
import warnings

from PIL import Image, ImageOps

EXTS = {".jpg", ".jpeg", ".jpe", ".jfif", ".png"}


def make_odd(photo, out):
    os.makedirs(out, exist_ok=True)
    im = Image.open(photo).convert("RGB")
    j = lambda name, img, **kw: img.save(os.path.join(out, name), "JPEG", **kw)
    j("cmyk.jpg", im.convert("CMYK"), quality=90)
    j("gray.JPEG", im.convert("L"), quality=90)
    j("progressive.jpg", im, quality=85, progressive=True)
    j("s444.jpg", im, quality=95, subsampling=0)
    j("s422.jpg", im, quality=95, subsampling=1)
    j("restart.jpg", im, quality=90, restart_marker_blocks=4)
    im.save(os.path.join(out, "png-named.JPEG"), "PNG")
    rgba = im.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(os.path.join(out, "rgba.png"))
    im.convert("P", palette=Image.ADAPTIVE).save(os.path.join(out, "palette.png"))
    im.convert("L").save(os.path.join(out, "gray.png"))


def main():
    if sys.argv[1] == "--make-odd":
        make_odd(sys.argv[2], sys.argv[3])
        return
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
                        orientation = im.getexif().get(0x0112, 1) if im.format == "JPEG" else 1
                    dst = os.path.join(out, rel + ".png")
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    rgb.save(dst, compress_level=1)
                    if orientation in range(2, 9):
                        with Image.open(p) as im:
                            turned = ImageOps.exif_transpose(im).convert("RGB")
                        turned.save(os.path.join(out, rel + ".oriented.png"), compress_level=1)
                    tsv.write(f"{rel}\tok\t{rgb.width}\t{rgb.height}\n")
                except Exception as e:  # noqa: BLE001 -- every refusal is a verdict
                    msg = str(e).replace(p, rel).replace("\t", " ").replace("\n", " ")[:200]
                    tsv.write(f"{rel}\terror\t{type(e).__name__}: {msg}\n")


if __name__ == "__main__":
    main()
