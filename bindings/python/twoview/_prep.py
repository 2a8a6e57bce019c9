"""prep_shards: an image folder into memory-mapped Arrow shards, from Python."""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, NamedTuple, Optional, Union

from . import _native
from ._augment import RecipeLike, as_recipe
from ._native import DEFAULT_MAX_PIXELS

PathLike = Union[str, "os.PathLike[str]"]


class Skipped(NamedTuple):
    """An input that was not stored, and why (the decoder's message)."""

    split: str
    key: str
    reason: str


@dataclass
class PrepSummary:
    """What a prep did (the CLI prints the same)."""

    inputs: Dict[str, int]
    rows: Dict[str, int]
    skipped: List[Skipped]
    skipped_by_kind: Dict[str, int]
    shards_written: int
    shards_resumed: int
    shard_bytes: int
    pixel_bytes: int
    input_bytes: int
    raw_rows: int
    jpeg_rows: int
    cmyk_inputs: int
    png_inputs: int
    warned_inputs: int
    seconds: float
    already_complete: bool
    out: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def stored(self) -> int:
        return sum(self.rows.values())


class SkippedInputsWarning(UserWarning):
    """Shards were written, but some inputs could not be decoded (listed in the summary)."""


class SkippedInputs(_native.PrepError):
    """``strict=True`` and some inputs were skipped (the CLI's exit status 3); ``.summary``."""

    def __init__(self, summary: PrepSummary):
        self.summary = summary
        lines = [f"  {s.key}: {s.reason}" for s in summary.skipped[:20]]
        more = f"\n  … and {len(summary.skipped) - 20} more" if len(summary.skipped) > 20 else ""
        super().__init__(
            f"{len(summary.skipped)} inputs skipped (listed in {summary.out}/manifest.json):\n"
            + "\n".join(lines)
            + more
        )


def _bar(progress: Union[None, bool, Callable[[str, int, int, int], None]]):
    """The callback for the native prep: a tqdm bar on a terminal (progress=None), always
    (True), never (False), or the caller's own callable(stage, done, total, skipped)."""
    if callable(progress):
        return progress, lambda: None
    if progress is False or (progress is None and not sys.stderr.isatty()):
        return None, lambda: None
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    state = {"stage": None, "bar": None}

    def update(stage: str, done: int, total: int, skipped: int) -> None:
        if stage != state["stage"]:
            if state["bar"] is not None:
                state["bar"].close()
            state["stage"] = stage
            state["bar"] = tqdm(total=total, unit=f" {stage}", dynamic_ncols=True) if tqdm and total else None
        bar = state["bar"]
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)
            bar.set_postfix_str(f"{skipped} skipped")
        elif tqdm is None and total:
            print(f"\r{stage}: {done}/{total} ({skipped} skipped)", end="", file=sys.stderr, flush=True)

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].close()
        elif tqdm is None:
            print(file=sys.stderr)

    return update, close


def prep_shards(
    root: PathLike,
    out: PathLike,
    *,
    split: str = "all",
    val_labels: Optional[PathLike] = None,
    short_side: int = 256,
    max_side: Optional[int] = None,
    upscale: bool = False,
    filter: str = "bilinear",
    encoding: str = "raw",
    quality: int = 90,
    raw_max_bytes: int = 256 * 256 * 3,
    rows_per_shard: int = 2048,
    batch_rows: int = 256,
    shuffle_seed: Optional[int] = None,
    dct_scaling: bool = True,
    exif_orientation: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    views: int = 0,
    view_size: int = 224,
    view_recipe: RecipeLike = "mocov3_vit",
    view_seed: int = 0,
    view_batch_rows: int = 256,
    threads: Optional[int] = None,
    progress: Union[None, bool, Callable[[str, int, int, int], None]] = None,
    strict: bool = False,
) -> PrepSummary:
    """Decodes and resizes every image of ``root`` into Arrow shards plus ``manifest.json`` in
    ``out`` — ``twoview prep-shards`` with the same options and defaults.

    Layouts: ``root/{train,val}/<class>/*`` (ImageNet; a flat val/ with ``val_labels``), the
    Kaggle ``root/ILSVRC/Data/CLS-LOC/...``, or ``root/<class>/*`` (one split, "train").
    ``encoding``: "raw" (fastest to load), "jpeg" (re-encoded at ``quality``), "auto".
    ``views=K`` also writes K pre-augmented view pairs per train image (offline views).

    Inputs that cannot be decoded are skipped and listed in the summary and the manifest; a
    ``SkippedInputsWarning`` says so (``strict=True`` raises ``SkippedInputs`` instead, the
    CLI's exit status 3). An interrupted prep (Ctrl-C raises ``KeyboardInterrupt`` once the
    current record batch is done) keeps its finished shards: the same call resumes. A folder
    already complete for these inputs and settings is left as it is (``already_complete``).
    """
    update, close = _bar(progress)
    try:
        text = _native.prep_shards(
            os.fspath(root), os.fspath(out), split=split,
            val_labels=None if val_labels is None else os.fspath(val_labels),
            short_side=short_side, max_side=max_side, upscale=upscale, filter=filter,
            encoding=encoding, quality=quality, raw_max_bytes=raw_max_bytes,
            rows_per_shard=rows_per_shard, batch_rows=batch_rows, shuffle_seed=shuffle_seed,
            dct_scaling=dct_scaling, exif_orientation=exif_orientation, max_pixels=max_pixels,
            views=views, view_size=view_size, view_recipe=as_recipe(view_recipe),
            view_seed=view_seed, view_batch_rows=view_batch_rows, threads=threads,
            progress=update,
        )
    finally:
        close()
    raw = json.loads(text)
    known = set(PrepSummary.__dataclass_fields__) - {"out", "extra", "skipped"}
    summary = PrepSummary(
        skipped=[Skipped(s["split"], s["key"], s["reason"]) for s in raw.pop("skipped")],
        out=os.fspath(out),
        **{k: raw.pop(k) for k in list(raw) if k in known},
        extra=raw,
    )
    if summary.skipped:
        if strict:
            raise SkippedInputs(summary)
        warnings.warn(
            f"{len(summary.skipped)} inputs skipped ("
            + ", ".join(f"{n} {k}" for k, n in summary.skipped_by_kind.items())
            + f"); listed in summary.skipped and {os.fspath(out)}/manifest.json",
            SkippedInputsWarning,
            stacklevel=2,
        )
    return summary
