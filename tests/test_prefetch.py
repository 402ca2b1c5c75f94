"""Reader threads and shared-memory reader processes: the same batches, in the same order, with the
same plan look-ahead and global RNG draws as the DataLoader they replace; filtered caches go to the
processes, JPEG arrays and pinned batches keep the DataLoader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny_cache import build_tiny_cache
from torch.utils.data import DataLoader

from mmrebal.cache.buffers import BufferPool
from mmrebal.cache.dataset import CacheDataset
from mmrebal.cache.writer import Entry, SampleJournal, assemble
from mmrebal.data.loading import loader_settings
from mmrebal.data.prefetch import ThreadLoader
from mmrebal.data.ring import SharedRingLoader
from mmrebal.evaluation.scoring import batch_loader

CPU = torch.device("cpu")
BATCHES = [[5, 0, 5, 9], [3, 3], [11, 1, 2, 7, 7], [0], [8, 4, 6, 10]]  # unsorted, duplicates


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cache(tmp_path_factory.mktemp("cache") / "tiny.h5", n=20, seed=4)


class Counted:
    """A batch sampler that records how many row lists were drawn when each batch arrived."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.batches, self.drawn = batches, 0

    def __iter__(self) -> Iterator[list[int]]:
        for rows in self.batches:
            self.drawn += 1
            yield rows


def _run(loader, sampler: Counted) -> tuple[list[dict], list[int], torch.Tensor]:
    torch.manual_seed(0)
    batches, drawn = [], []
    for batch in loader:
        batches.append(batch)
        drawn.append(sampler.drawn)
    return batches, drawn, torch.rand(3)  # what the global generator gives next


def _ours(kind: str, dataset: CacheDataset, batches, workers: int, prefetch: int, persistent: bool):
    if kind == "threads":
        return ThreadLoader(dataset, batches, workers, prefetch, persistent, CPU)
    return SharedRingLoader(dataset, batches, workers, prefetch, persistent)


@pytest.mark.parametrize("kind", ["threads", "ring"])
@pytest.mark.parametrize("persistent", [False, True])
def test_readers_match_the_dataloader_batch_for_batch(cache: Path, persistent: bool, kind: str) -> None:
    dataset = CacheDataset(cache, "train")
    assert dataset.thread_safe
    threads, processes = Counted(BATCHES), Counted(BATCHES)
    settings = loader_settings(2, CPU, "threads")
    ours = _ours(kind, dataset, threads, 2, settings.prefetch, persistent)
    theirs = DataLoader(dataset, batch_sampler=processes, collate_fn=lambda b: b, num_workers=2,
                        persistent_workers=persistent, prefetch_factor=settings.prefetch)  # fmt: skip
    for _ in range(2):  # two epochs: a persistent loader draws its base seed once
        got, got_drawn, got_next = _run(ours, threads)
        want, want_drawn, want_next = _run(theirs, processes)
        assert got_drawn == want_drawn  # plans run exactly as far ahead of the batches
        assert torch.equal(got_next, want_next)
        assert [b["idx"].tolist() for b in got] == BATCHES
        for a, b in zip(got, want, strict=True):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_batch_loader_picks_threads_only_where_the_reads_allow(tmp_path: Path, cache: Path) -> None:
    assert isinstance(
        batch_loader(CacheDataset(cache, "train"), BATCHES, CPU, loader_settings(2, CPU)), ThreadLoader
    )
    processes = loader_settings(2, CPU, "processes")
    assert isinstance(batch_loader(CacheDataset(cache, "train"), BATCHES, CPU, processes), SharedRingLoader)
    pinned = loader_settings(2, torch.device("cuda"), "processes")  # pinned batches: the DataLoader pins
    assert isinstance(batch_loader(CacheDataset(cache, "train"), BATCHES, CPU, pinned), DataLoader)
    out = tmp_path / "lzf.h5"
    journal = SampleJournal(out, "lzf")
    for i in range(4):
        journal.write(f"s{i}", {"audio/spec": np.full((3, 2), i, np.float32)})
    entries = [Entry(f"s{i}", i % 2, "train") for i in range(4)]
    assemble(journal, entries, out, ["a", "b"], {"audio": "spectrogram"}, {}, compression="lzf")
    filtered = CacheDataset(out, "train")  # decoding holds h5py's lock: reader processes
    assert not filtered.thread_safe
    ring = batch_loader(filtered, [[3, 0, 3]], CPU, loader_settings(2, CPU))
    assert isinstance(ring, SharedRingLoader)
    (batch,) = list(ring)
    assert torch.equal(batch["audio"], CacheDataset(out, "train").__getitems__([3, 0, 3])["audio"])
    assert CacheDataset(out, "train", preload=True).thread_safe  # preloaded: no h5py at all


@pytest.mark.parametrize("kind", ["threads", "ring"])
def test_a_failing_read_reaches_the_consumer(cache: Path, kind: str) -> None:
    loader = _ours(kind, CacheDataset(cache, "train"), [[0], [999]], 1, 2, False)
    with pytest.raises(IndexError):
        list(loader)


def test_a_reader_process_that_dies_is_one_clear_error_not_a_hang(cache: Path) -> None:
    loader = SharedRingLoader(CacheDataset(cache, "train"), [[i % 12] for i in range(50)], 2, 2, False)
    batches = iter(loader)
    next(batches)
    loader.processes[1].kill()
    with pytest.raises(RuntimeError, match="a reader process exited unexpectedly"):
        list(batches)
    assert loader.processes == []  # the others were stopped too


def test_ring_buffers_come_back_and_are_reused_across_epochs(cache: Path) -> None:
    loader = SharedRingLoader(CacheDataset(cache, "train"), BATCHES, 2, 2, True)
    for _ in range(3):
        batches = list(loader)
    batch = batches[-1]
    del batches
    made = len(loader.buffers.arrays)
    assert loader.buffers.free_count() == made - len(loader.dataset.keys)  # the last batch holds its own
    del batch
    assert loader.buffers.free_count() == made  # nothing holds a batch: every buffer is back
    assert made <= 2 * len(loader.dataset.keys) * (2 * 2 + 1)  # in flight + the one in use, per key
    loader._stop()


def test_a_buffer_comes_back_only_when_no_tensor_sees_it() -> None:
    pool = BufferPool()
    batch = pool.tensor((4, 3), np.float32)
    address, view, same = batch.data_ptr(), batch[1:], batch.float()  # float() of float32: itself
    del batch, same
    assert pool.free_count() == 0  # ``view`` still sees the buffer
    del view
    assert pool.free_count() == 1
    assert pool.tensor((4, 3), np.float32).data_ptr() == address  # reused (then freed again)
    assert pool.tensor((5, 3), np.float32).data_ptr() != address  # another shape: its own buffer


@pytest.mark.parametrize("kind", ["threads", "ring"])
def test_batches_a_consumer_keeps_are_never_overwritten(cache: Path, kind: str) -> None:
    dataset = CacheDataset(cache, "train")
    batches = [[i % 12, (5 * i) % 12] for i in range(20)]
    kept = list(_ours(kind, dataset, batches, 2, 2, False))  # every batch held at once
    for rows, batch in zip(batches, kept, strict=True):
        fresh = CacheDataset(cache, "train").__getitems__(rows)
        assert all(torch.equal(batch[k], fresh[k]) for k in fresh)
