"""The prefetching two-view loader, zero-copy into PyTorch."""

from __future__ import annotations

import os
import weakref
from typing import Any, Callable, Dict, Iterator, NamedTuple, Optional, Tuple, Union

from ._augment import RecipeLike, _size, as_recipe
from ._native import LoaderError, NativeLoader


class Batch(NamedTuple):
    """One batch. ``views`` is the loader's buffer itself: it returns to the ring (for the
    loader to refill) when the tensor and every view of it are freed."""

    views: Any
    """``torch.uint8`` ``[B, 2, H, W, 3]``: ``views[:, 0]`` and ``views[:, 1]`` are the two views."""
    labels: Any
    """``torch.int64`` ``[B]``: class labels."""
    indices: Any
    """``torch.int64`` ``[B]``: global row indices in the split."""
    cursor: Dict[str, int]
    """``{"epoch", "batch"}`` of this batch."""
    next_cursor: Dict[str, int]
    """Where a loader resumed after this batch starts."""


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is the user's own
        raise ImportError("twoview.Loader hands out torch tensors: install torch") from e
    return torch


def _dist_defaults(rank: Optional[int], world_size: Optional[int]) -> Tuple[int, int]:
    """rank/world_size: given, else torch.distributed's when it is initialised, else 0/1."""
    if rank is not None and world_size is not None:
        return rank, world_size
    torch = _torch()
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        r, w = dist.get_rank(), dist.get_world_size()
    else:
        r, w = 0, 1
    return (r if rank is None else rank), (w if world_size is None else world_size)


def _cursor(c: Tuple[int, int]) -> Dict[str, int]:
    return {"epoch": c[0], "batch": c[1]}


def _wrap(torch, nb) -> Batch:
    labels = torch.tensor(nb.labels, dtype=torch.int64)
    indices = torch.tensor(nb.rows, dtype=torch.int64)
    cursor, next_cursor = _cursor(nb.cursor), _cursor(nb.next_cursor)
    return Batch(torch.from_dlpack(nb), labels, indices, cursor, next_cursor)


class Loader:
    """Two-view batches from the shards in ``shards`` (made by ``prep_shards`` or
    ``twoview prep-shards``), augmented by ``recipe`` on ``threads`` worker threads,
    ``prefetch`` batches ahead.

    Iterating gives the rest of the current epoch; the next ``for`` gives the next epoch (as a
    ``DataLoader`` with a ``DistributedSampler`` whose epoch advances by itself)::

        loader = twoview.Loader("shards", batch_size=256, recipe="mocov3_vit")
        for epoch in range(100):
            for views, labels, *_ in loader:
                x1, x2 = views[:, 0].cuda(non_blocking=True), views[:, 1].cuda(non_blocking=True)

    Each epoch is a fresh permutation of the rows from (seed, epoch), split across ranks;
    each sample's views come from its own random stream keyed on (seed, epoch, row, view), so
    the bytes do not depend on ``threads``. ``state_dict()`` / ``load_state_dict()`` resume
    exactly after the last batch handed out. ``rank``/``world_size`` default to
    ``torch.distributed``'s when it is initialised.

    ``views`` tensors are the ring's buffers (``prefetch + 2`` of them): keep a batch beyond the
    next step and the loader has one fewer to fill; keep them all and ``next`` raises
    ``LoaderError`` rather than wait forever. ``.clone()`` what you keep.
    ``pin_memory=True`` makes the buffers pinned memory from torch's caching host allocator so
    ``.cuda(non_blocking=True)`` overlaps with compute. ``dct_scaled_decode`` (JPEG shards)
    decodes a row at 1/2, 1/4 or 1/8 scale when both of its crops still span ``size`` there
    (faster on shards stored large; never at short side 256 with 224 views); ``False`` always
    decodes at full size, the reference's bytes.
    """

    def __init__(
        self,
        shards: Union[str, "os.PathLike[str]"],
        split: str = "train",
        batch_size: int = 256,
        recipe: RecipeLike = "mocov3_vit",
        size: Union[int, Tuple[int, int]] = 224,
        *,
        seed: int = 0,
        epoch: int = 0,
        cursor: Optional[Dict[str, int]] = None,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        threads: Optional[int] = None,
        prefetch: int = 4,
        drop_last: bool = True,
        on_bad_row: str = "fail",
        pin_memory: bool = False,
        dct_scaled_decode: bool = True,
        _alloc: Optional[Callable[[int], Any]] = None,
    ):
        torch = _torch()
        self.shards = os.fspath(shards)
        self.split = split
        self.batch_size = int(batch_size)
        self.recipe = as_recipe(recipe)
        self.height, self.width = _size(size)
        self.seed = int(seed)
        self.rank, self.world_size = _dist_defaults(rank, world_size)
        self.threads = threads
        self.prefetch = int(prefetch)
        self.drop_last = bool(drop_last)
        self.on_bad_row = on_bad_row
        self.dct_scaled_decode = bool(dct_scaled_decode)
        self.pin_memory = bool(pin_memory)
        self._alloc = _alloc
        if pin_memory and _alloc is None:
            if not torch.cuda.is_available():
                raise LoaderError("pin_memory=True needs CUDA, and torch.cuda.is_available() is False")
            self._alloc = lambda n: torch.empty(n, dtype=torch.uint8, pin_memory=True)
        start = (cursor["epoch"], cursor["batch"]) if cursor is not None else (int(epoch), 0)
        self._native: Optional[NativeLoader] = None
        self._start(start)

    def _start(self, cursor: Tuple[int, int]) -> None:
        self.close()
        self._pending = None
        self._cursor = cursor
        self._native = NativeLoader(
            self.shards, self.split, self.recipe, self.batch_size, self.height, self.width,
            self.seed, self.rank, self.world_size, self.threads, self.prefetch, self.drop_last,
            cursor[0], cursor[1], None, self.on_bad_row, self._alloc, self.dct_scaled_decode,
        )
        self._finalizer = weakref.finalize(self, self._native.close)

    def close(self) -> None:
        """Stops the worker threads (also done when the loader is garbage-collected)."""
        native = getattr(self, "_native", None)
        if native is not None:
            self._finalizer.detach()
            self._pending = None
            native.close()
            self._native = None

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return self._live().batches_per_epoch

    def _live(self) -> NativeLoader:
        if self._native is None:
            raise LoaderError("the loader is closed")
        return self._native

    @property
    def epoch(self) -> int:
        """The epoch the next batch belongs to."""
        return self._cursor[0]

    def set_epoch(self, epoch: int) -> None:
        """Start the next iteration at the beginning of ``epoch`` (DistributedSampler's name)."""
        if self._cursor != (epoch, 0):
            self._start((int(epoch), 0))

    def __iter__(self) -> Iterator[Batch]:
        torch = _torch()
        native = self._live()
        epoch = self._cursor[0]
        while True:
            nb, self._pending = (self._pending or native.next()), None
            if nb is None:
                return
            if nb.cursor[0] != epoch:  # the first batch of the next epoch: keep it for then
                self._pending = nb
                return
            self._cursor = nb.next_cursor
            # No local may keep the views: this frame lives on while the caller holds the batch,
            # and a reference here would hold a ring buffer past the caller's `del`.
            yield _wrap(torch, nb)

    def state_dict(self) -> Dict[str, Any]:
        """Where to resume: after the last batch handed out, and what must match to do so."""
        return {
            "epoch": self._cursor[0],
            "batch": self._cursor[1],
            "seed": self.seed,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "drop_last": self.drop_last,
            "rows_per_rank": self._live().rows_per_rank,
            "recipe": self.recipe.to_dict(),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue exactly where ``state`` (from ``state_dict``) left off."""
        mine = self.state_dict()
        for key in ("seed", "batch_size", "world_size", "drop_last", "rows_per_rank", "recipe"):
            if key in state and state[key] != mine[key]:
                raise LoaderError(
                    f"cannot resume: state_dict's {key} is {state[key]!r}, this loader's is {mine[key]!r}"
                )
        self._start((int(state["epoch"]), int(state["batch"])))

    @property
    def ring_size(self) -> int:
        """Buffers in the ring: at most this many batches alive at once."""
        return self._live().ring_size

    def stats(self) -> Dict[str, float]:
        """Batches handed out, seconds spent waiting for them, bad rows replaced."""
        b, wait, replaced = self._live().stats()
        return {"batches": b, "wait_s": wait, "replaced": replaced}

    def __repr__(self) -> str:
        return (
            f"Loader({self.shards!r}, split={self.split!r}, batch_size={self.batch_size}, "
            f"recipe={self.recipe.name!r}, size=({self.height}, {self.width}), seed={self.seed}, "
            f"rank={self.rank}, world_size={self.world_size}, cursor={_cursor(self._cursor)})"
        )
