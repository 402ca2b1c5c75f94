"""Reader threads: the train and scoring loaders of caches whose reads need neither h5py nor the GIL.

A DataLoader worker process hands each batch to the main process through fresh shared memory:
the worker copies the batch into a new segment and both processes fault its pages in, which costs
more CPU than reading the rows (about 28 ms per 29 MB ``ogm-3f`` batch on one core). Unfiltered
cache arrays are read by file offset (``mmrebal.cache.rows.RowFile``: small rows gathered from a
mapped file, large ones by ``preadv`` with the GIL released), so threads of the main process read
batches in parallel straight into the tensors the trainer uses (pinned ones on CUDA): no transfer
between processes, no extra copy.

:class:`ThreadLoader` keeps ``workers x prefetch`` batches in flight, draws row lists from the batch
sampler exactly when a DataLoader with as many workers would (so plans run as far ahead of the
feedback) and yields in order. It also draws the DataLoader's per-iterator base seed from the
global torch generator, so that swapping one loader for the other never changes a run's numbers.
Filtered (compressed) caches use reader processes (``mmrebal.data.ring``): their decoding holds
h5py's lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

from mmrebal.cache.dataset import CacheDataset

T = TypeVar("T")


class ReaderLoader:
    """What reader threads and reader processes share to stand in for a DataLoader: its one
    base-seed draw and its look-ahead of ``workers x prefetch`` row lists, drawn when it draws them."""

    def __init__(self, batches: Iterable[list[int]], workers: int, prefetch: int, persistent: bool) -> None:
        self.batch_sampler = batches
        self.workers = workers
        self.depth = workers * prefetch
        self.persistent = persistent
        self._seeded = False

    def _draw_base_seed(self) -> None:
        """The one draw a DataLoader iterator takes (once per loader when its workers persist)."""
        if not (self.persistent and self._seeded):
            torch.empty((), dtype=torch.int64).random_()
            self._seeded = True

    def _look_ahead(self, submit: Callable[[list[int]], T]) -> tuple[deque[T], Callable[[], None]]:
        """The submitted batches, oldest first, and ``fill``, which submits row lists until ``depth``
        are in flight; call it once to start and again after taking each batch's result."""
        rows = iter(self.batch_sampler)
        pending: deque[T] = deque()

        def fill() -> None:
            while len(pending) < self.depth:
                batch = next(rows, None)
                if batch is None:
                    return
                pending.append(submit(batch))

        return pending, fill


class ThreadLoader(ReaderLoader):
    """Batches of ``dataset.__getitems__(rows)`` for each row list of ``batches``, read by threads."""

    def __init__(
        self,
        dataset: CacheDataset,
        batches: Iterable[list[int]],
        workers: int,
        prefetch: int,
        persistent: bool,
        device: torch.device,
    ) -> None:
        super().__init__(batches, workers, prefetch, persistent)
        self.dataset = dataset
        self.device = device
        self._pool: ThreadPoolExecutor | None = None  # kept across iterations when persistent

    def _bind_device(self) -> None:
        """A reader thread's CUDA device (thread-local), so pinned batches never touch another GPU."""
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._draw_base_seed()
        self.dataset.open()  # here, so that the threads only share handles
        pool = self._pool or ThreadPoolExecutor(
            self.workers, thread_name_prefix="mmrebal-reader", initializer=self._bind_device
        )
        if self.persistent:
            self._pool = pool
        pending, fill = self._look_ahead(lambda rows: pool.submit(self.dataset.__getitems__, rows))
        try:
            fill()
            while pending:
                batch = pending.popleft().result()
                fill()
                yield batch
        finally:
            if not self.persistent:
                pool.shutdown(wait=False, cancel_futures=True)
