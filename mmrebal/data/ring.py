"""Reader processes that read batches straight into shared memory allocated once.

Reader threads (``mmrebal.data.prefetch``) share one GIL, and a batch of small rows is mostly
Python around a short copy: at ``avmnist`` shapes two threads read slower than one, where two
processes running the same reads reach 1.6-1.8x. A DataLoader's worker processes pay the other
way: each batch is copied into a fresh shared-memory segment that both processes fault in, which
costs more than the read (``benchmarks/loader.py``: 0.07-0.25x of the one-thread rate).

:class:`SharedRingLoader` keeps both costs out. The main process owns a pool of shared-memory
buffers (:class:`SharedBuffers`) sized to the batches; each worker process receives a buffer once,
over its own pipe, and afterwards only small tasks (split positions, buffer ids). It reads the rows
into the buffers with the dataset's own reads (``CacheDataset.read_into``: by file offset, or
through HDF5 for a filtered array) and answers on the same pipe; batches go to the workers in turn,
so the answer for a batch is the next one on its worker's pipe (a queue shared by the workers, with
its locks and feeder threads, cost the main process more than the reads at ``avmnist`` shapes). The batch
the consumer gets is a view of those buffers; a buffer returns to the pool only when the last
tensor over it is freed, so a batch the consumer keeps is never overwritten.

Batches come in order, row lists are drawn from the batch sampler exactly when a DataLoader with
as many workers would draw them, and the loader takes the DataLoader's one base-seed draw from
the global torch generator, so swapping loaders never changes a run's numbers. JPEG-encoded
arrays (byte strings per row) and pinned batches (CUDA) keep the DataLoader.
"""

from __future__ import annotations

import contextlib
import pickle
import threading
import weakref
from collections import defaultdict
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as mp

from mmrebal.cache.dataset import CacheDataset
from mmrebal.data.prefetch import ReaderLoader

ROW_STEP = 16  # a new buffer holds the batch's rows rounded up to this, so near sizes share buffers
POLL_S = 1.0  # how often a wait for a batch checks that its worker is alive


class SharedBuffers:
    """Shared-memory arrays by cache key, handed out best-fit by rows and returned when unreachable."""

    def __init__(self) -> None:
        self.arrays: dict[int, torch.Tensor] = {}  # buffer id -> [capacity, *row shape], shared
        self._free: dict[str, list[int]] = defaultdict(list)
        self._lock = threading.Lock()  # finalizers run on whichever thread frees the last tensor

    def take(self, key: str, rows: int, shape: tuple[int, ...], dtype: np.dtype) -> int:
        """The id of a free buffer of ``key`` with room for ``rows`` (the smallest), or a new one."""
        with self._lock:
            fits = [i for i in self._free[key] if len(self.arrays[i]) >= rows]
            if fits:
                best = min(fits, key=lambda i: len(self.arrays[i]))
                self._free[key].remove(best)
                return best
        capacity = -(-max(rows, 1) // ROW_STEP) * ROW_STEP
        array = torch.from_numpy(np.empty((capacity, *shape), dtype)).share_memory_()
        with self._lock:
            buffer = len(self.arrays)
            self.arrays[buffer] = array
        return buffer

    def give_back(self, key: str, buffer: int) -> None:
        with self._lock:
            self._free[key].append(buffer)

    def tensor(self, key: str, buffer: int, rows: int) -> torch.Tensor:
        """The first ``rows`` of a buffer as a tensor; the buffer returns once nothing sees it."""
        view = self.arrays[buffer].numpy()[:rows]
        weakref.finalize(view, self.give_back, key, buffer)
        return torch.from_numpy(view)

    def free_count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._free.values())


def _read_tasks(dataset: CacheDataset, conn: Connection) -> None:
    """A worker: read each task's rows into its buffers and answer with the error or None, in order."""
    torch.set_num_threads(1)
    views: dict[int, np.ndarray] = {}
    while (task := _next_task(conn)) is not None:
        rows, buffers, new = task
        positions = np.frombuffer(rows, dtype=np.int64)
        for buffer, array in new.items():
            views[buffer] = array.numpy()
        try:
            for key, buffer in buffers.items():
                dataset.read_into(key, positions, views[buffer][: len(positions)])
            conn.send(None)
        except Exception as error:  # the consumer re-raises it
            conn.send(_portable(error))
    dataset.close()


def _next_task(conn: Connection) -> Any:
    """The next task, or None to stop (also when the main process's end is gone)."""
    try:
        return conn.recv()
    except EOFError:
        return None


def _portable(error: Exception) -> Exception:
    """``error`` if it survives pickling, else a RuntimeError with its text."""
    try:
        pickle.dumps(error)
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


class SharedRingLoader(ReaderLoader):
    """Batches of ``dataset`` for each row list of ``batches``, read by ``workers`` processes."""

    def __init__(
        self,
        dataset: CacheDataset,
        batches: Iterable[list[int]],
        workers: int,
        prefetch: int,
        persistent: bool,
    ) -> None:
        layouts = {key: dataset.row_layout(key) for key in dataset.keys}
        missing = [key for key, layout in layouts.items() if layout is None]
        if missing:
            raise ValueError(f"shared-memory readers cannot hold JPEG arrays ({', '.join(missing)})")
        super().__init__(batches, workers, prefetch, persistent)
        self.dataset = dataset
        self.layouts: dict[str, tuple[tuple[int, ...], np.dtype]] = layouts  # type: ignore[assignment]
        self.buffers = SharedBuffers()
        self.processes: list[mp.Process] = []
        self._pipes: list[Connection] = []  # the main process's end, one per worker
        self._sent: list[set[int]] = []  # buffer ids each worker holds
        self._seq = 0  # batches handed out by this loader's workers (which worker reads the next)

    def _start(self) -> None:
        if self.processes:
            return
        context = mp.get_context()
        for _ in range(self.workers):
            mine, theirs = context.Pipe()
            process = context.Process(target=_read_tasks, args=(self.dataset, theirs), daemon=True)
            process.start()
            theirs.close()
            self.processes.append(process)
            self._pipes.append(mine)
            self._sent.append(set())
        self._seq = 0

    def _stop(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):  # that worker is gone already
                pipe.send(None)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        for pipe in self._pipes:
            pipe.close()
        self.processes, self._pipes, self._sent = [], [], []

    def _submit(self, rows: list[int]) -> tuple[int, np.ndarray, dict[str, int]]:
        worker, self._seq = self._seq % self.workers, self._seq + 1  # in turn, as the DataLoader
        positions = np.asarray(rows, dtype=np.int64)
        buffers = {key: self.buffers.take(key, len(positions), *self.layouts[key]) for key in self.layouts}
        new = {b: self.buffers.arrays[b] for b in buffers.values() if b not in self._sent[worker]}
        self._sent[worker].update(new)
        self._pipes[worker].send((positions.tobytes(), buffers, new))  # bytes pickle 3x faster
        return worker, positions, buffers

    def _wait(self, worker: int) -> Exception | None:
        """The answer to the oldest task of ``worker``; one line if the worker died."""
        pipe, process = self._pipes[worker], self.processes[worker]
        while not pipe.poll(POLL_S):
            if not process.is_alive():
                code = process.exitcode
                self._stop()
                raise RuntimeError(f"a reader process exited unexpectedly (exit code {code})")
        try:
            return pipe.recv()
        except EOFError:
            self._stop()
            raise RuntimeError("a reader process exited unexpectedly") from None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._draw_base_seed()
        self._start()
        pending, fill = self._look_ahead(self._submit)
        try:
            fill()
            while pending:
                worker, positions, buffers = pending.popleft()
                error = self._wait(worker)
                arrays = {key: self.buffers.tensor(key, b, len(positions)) for key, b in buffers.items()}
                if error is not None:
                    raise error
                fill()
                yield self.dataset.batch_of(positions, arrays)
        finally:
            for worker, _, buffers in pending:  # an abandoned iteration: let the workers finish first
                if self.processes:
                    self._wait(worker)
                for key, b in buffers.items():
                    self.buffers.give_back(key, b)
            if not self.persistent:
                self._stop()
