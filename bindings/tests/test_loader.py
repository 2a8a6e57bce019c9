"""twoview.Loader: zero copy, the ring's limits, determinism, resume, ranks."""

import hashlib
import time

import pytest
import torch

import twoview
from conftest import stored_rows


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def first_batches(loader, n):
    out = []
    it = iter(loader)
    for _ in range(n):
        b = next(it)
        out.append((digest(b.views), b.indices.tolist(), b.labels.tolist(), b.cursor))
    return out


def test_batches_are_the_ring_buffers_without_a_copy(shards):
    blocks = []

    def alloc(n):
        t = torch.empty(n, dtype=torch.uint8)
        blocks.append(t)
        return t

    with twoview.Loader(shards, batch_size=4, size=32, prefetch=2, threads=2, _alloc=alloc) as loader:
        assert len(blocks) == loader.ring_size == 4
        spans = [(t.data_ptr(), t.data_ptr() + t.numel()) for t in blocks]
        seen = set()
        for i, b in enumerate(loader):
            p, n = b.views.data_ptr(), b.views.numel()
            inside = [k for k, (lo, hi) in enumerate(spans) if lo <= p and p + n <= hi]
            assert inside, f"batch {i}: its tensor at {p:#x} is not inside any ring buffer"
            seen.add(inside[0])
            assert b.views.shape == (4, 2, 32, 32, 3) and b.views.dtype == torch.uint8
            assert b.views.is_contiguous()
        assert len(seen) == 4, "the ring's buffers are reused in turn"


def test_holding_every_buffer_raises_and_freeing_one_goes_on(shards):
    with twoview.Loader(shards, batch_size=4, size=32, prefetch=1, threads=1) as loader:
        assert loader.ring_size == 3
        it = iter(loader)
        held = [next(it).views for _ in range(3)]
        t = time.monotonic()
        with pytest.raises(twoview.LoaderError, match="all 3 batch buffers are held"):
            next(it)
        assert time.monotonic() - t < 10
        del held[0]  # one buffer back to the ring
        it = iter(loader)
        assert next(it).views.shape[0] == 4


def test_batches_kept_alive_are_never_overwritten(shards):
    with twoview.Loader(shards, batch_size=4, size=32, prefetch=1, threads=2) as loader:
        it = iter(loader)
        kept = [next(it).views, next(it).views]  # two of three buffers held
        before = [digest(k) for k in kept]
        for _ in range(8):  # the third buffer cycles through the remaining batches
            b = next(it, None)
            if b is None:
                it = iter(loader)
                b = next(it)
            assert b.views.data_ptr() not in {k.data_ptr() for k in kept}
            del b
        assert [digest(k) for k in kept] == before


def test_views_are_the_augmenter_s_on_the_stored_rows(shards):
    rows = stored_rows(shards)
    aug = twoview.Augmenter("mocov3_vit", size=48)
    with twoview.Loader(shards, batch_size=8, size=48, seed=7, threads=2) as loader:
        for _ in range(2):  # epochs 0 and 1
            for b in loader:
                e = b.cursor["epoch"]
                for i, (r, label) in enumerate(zip(b.indices.tolist(), b.labels.tolist())):
                    key, lab, h, w, enc, px = rows[r]
                    assert (lab, enc) == (label, 0), key
                    img = torch.frombuffer(bytearray(px), dtype=torch.uint8).reshape(h, w, 3).numpy()
                    v1, v2, params = aug.two_views(img, seed=7, epoch=e, index=r)
                    assert b.views[i, 0].numpy().tobytes() == v1.tobytes(), f"{key} view 1 epoch {e}"
                    assert b.views[i, 1].numpy().tobytes() == v2.tobytes(), f"{key} view 2 epoch {e}"
                    assert len(params) == 2 and "crop" in params[0]


def test_epochs_are_permutations_and_ranks_split_them(shards):
    rows = len(stored_rows(shards))
    per_rank = []
    for rank in range(2):
        with twoview.Loader(shards, batch_size=4, size=32, rank=rank, world_size=2, threads=1) as loader:
            assert len(loader) == rows // 2 // 4
            epochs = []
            for _ in range(2):
                epochs.append([i for b in loader for i in b.indices.tolist()])
            assert epochs[0] != epochs[1], "each epoch is a fresh permutation"
            assert loader.epoch == 2
            per_rank.append(epochs)
    for e in range(2):
        a, b = set(per_rank[0][e]), set(per_rank[1][e])
        assert not a & b, f"epoch {e}: ranks share rows {sorted(a & b)}"
        assert len(a) == len(b) == len(per_rank[0][e])


def test_the_bytes_do_not_depend_on_threads_or_prefetch(shards):
    runs = []
    for threads, prefetch in [(1, 1), (3, 4)]:
        with twoview.Loader(shards, batch_size=4, size=32, seed=3, threads=threads, prefetch=prefetch) as loader:
            runs.append(first_batches(loader, 6))
    assert runs[0] == runs[1]


def test_state_dict_resumes_exactly_mid_epoch_and_across_epochs(shards):
    with twoview.Loader(shards, batch_size=4, size=32, seed=5, threads=2) as loader:
        n = len(loader)
        straight = [digest(b.views) for _ in range(3) for b in loader]
    for stop in (4, n, n + 3):
        with twoview.Loader(shards, batch_size=4, size=32, seed=5, threads=2) as first:
            got = []
            while len(got) < stop:
                for b in first:
                    got.append(digest(b.views))
                    if len(got) == stop:
                        break
            state = first.state_dict()
        with twoview.Loader(shards, batch_size=4, size=32, seed=5, threads=1) as again:
            again.load_state_dict(state)
            while len(got) < 3 * n:
                got += [digest(b.views) for b in again]
        assert got == straight, f"resumed after {stop} batches"


def test_a_state_dict_of_another_run_is_refused(shards):
    with twoview.Loader(shards, batch_size=4, size=32, seed=5, threads=1) as a:
        state = a.state_dict()
    with twoview.Loader(shards, batch_size=4, size=32, seed=6, threads=1) as b:
        with pytest.raises(twoview.LoaderError, match="seed is 5, this loader's is 6"):
            b.load_state_dict(state)


def test_rank_and_world_size_come_from_torch_distributed(shards, monkeypatch):
    dist = torch.distributed
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 3)
    with twoview.Loader(shards, batch_size=4, size=32, threads=1) as loader:
        assert (loader.rank, loader.world_size) == (1, 3)
        assert len(loader) == len(stored_rows(shards)) // 3 // 4


def test_jpeg_shards_load_deterministically(jpeg_shards):
    runs = []
    for threads in (1, 2):
        with twoview.Loader(jpeg_shards, batch_size=4, size=32, threads=threads) as loader:
            runs.append(first_batches(loader, 4))
    assert runs[0] == runs[1]


def test_dct_scaled_decode_keeps_the_batches_and_stays_close_to_a_full_decode(jpeg_shards):
    # Rows at short side 80, views of 16: crops of 32+ px decode at 1/2, 64+ at 1/4.
    runs = {}
    for dct in (True, False):
        with twoview.Loader(jpeg_shards, batch_size=4, size=16, dct_scaled_decode=dct) as loader:
            it = iter(loader)
            runs[dct] = [next(it) for _ in range(4)]
    differ = 0
    for a, b in zip(runs[True], runs[False]):
        assert a.indices.tolist() == b.indices.tolist() and a.labels.tolist() == b.labels.tolist()
        d = (a.views.int() - b.views.int()).abs().float()
        differ += int((d > 0).sum())
        assert d.mean() < 6.0, f"mean difference {d.mean():.2f} levels"
    assert differ > 0, "no row was decoded DCT-scaled"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_pin_memory_without_cuda_is_a_clear_error(shards):
    with pytest.raises(twoview.LoaderError, match="pin_memory=True needs CUDA"):
        twoview.Loader(shards, batch_size=4, pin_memory=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pin_memory_gives_pinned_batches(shards):
    with twoview.Loader(shards, batch_size=4, size=32, pin_memory=True) as loader:
        b = next(iter(loader))
        assert b.views.is_pinned()
        assert b.views.cuda(non_blocking=True).cpu().equal(b.views)
