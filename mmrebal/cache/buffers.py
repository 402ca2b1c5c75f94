"""Batch buffers that come back when the last tensor using them is gone.

A fresh batch array of tens of MB is an ``mmap`` the kernel has to fault in page by page and unmap
again (with a TLB shootdown across the process's threads): at ``bss-ks`` shapes that cost more CPU
than reading the rows, and reader threads faulting and unmapping at once slowed each other down.
:class:`BufferPool` hands out arrays over buffers it keeps: the batch tensor is made with
``torch.from_numpy`` on a view, which the tensor's storage holds until every tensor sharing it
(views included) is freed; then the view dies and a ``weakref.finalize`` returns its buffer.
So a buffer is reused only when nothing can still see it, and every byte of it is overwritten by
the next batch read into it. Pinned batches (CUDA) do not need this: PyTorch's pinned-memory
allocator caches its blocks (and waits for copies still reading them).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import defaultdict

import numpy as np
import torch

KEEP = 8  # free buffers kept per shape and dtype (a loader's batches in flight, and the one in use)


class BufferPool:
    """Reused ``np.empty`` buffers, one free list per (shape, dtype); thread-safe."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked worker starts empty, its lock free

    def _reset(self) -> None:
        self._free: dict[tuple[tuple[int, ...], np.dtype], list[np.ndarray]] = defaultdict(list)
        self._lock = threading.Lock()

    def tensor(self, shape: tuple[int, ...], dtype: np.dtype) -> torch.Tensor:
        """An uninitialised tensor over a pooled buffer; the buffer returns once it is unreachable."""
        key = (tuple(shape), np.dtype(dtype))
        with self._lock:
            buffer = self._free[key].pop() if self._free[key] else None
        if buffer is None:
            buffer = np.empty(key[0], key[1])
        view = buffer.view()
        weakref.finalize(view, self._release, key, buffer)
        return torch.from_numpy(view)

    def _release(self, key: tuple[tuple[int, ...], np.dtype], buffer: np.ndarray) -> None:
        with self._lock:
            if len(self._free[key]) < KEEP:
                self._free[key].append(buffer)

    def free_count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._free.values())


POOL = BufferPool()  # this process's
