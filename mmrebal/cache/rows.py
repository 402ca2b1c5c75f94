"""Reading rows of one-sample-chunk HDF5 arrays at file speed.

h5py's list selection (``ds[[3, 1, 7]]``) builds one hyperslab per index and costs ~70x a plain
per-row loop at 224x224 frame sizes (h5py issues 293 and 2536). Each cache row is exactly one chunk,
so the stored bytes of an unfiltered chunk are the row itself: HDF5 says once where every chunk sits
(``chunk_offsets``) and a batch is then one ``os.preadv`` per row straight into the caller's batch
buffer (:class:`RowFile`). That is the read ``read_direct_chunk`` does, without h5py's per-call
cost, and outside the GIL and h5py's global lock, so reader threads of one process read in parallel
(``mmrebal.data.prefetch``). A filtered (compressed) array falls back to one ``ds[row]`` per
row, decoded through a chunk cache that holds a whole chunk.
"""

from __future__ import annotations

import math
import mmap
import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import torch

MIN_CHUNK_CACHE = 1 << 20  # HDF5's default chunk cache size
GATHER_MAX = 64 << 10  # rows up to this many bytes are gathered from a mapping (RowFile)


def gathered(row_bytes: int) -> bool:
    """Whether rows this size are gathered in one copy per batch (small) rather than read one by one."""
    return row_bytes <= GATHER_MAX


def chunk_bytes(ds: h5py.Dataset) -> int:
    """Bytes of one (uncompressed) chunk of ``ds``."""
    return int(np.prod(ds.chunks or ds.shape)) * ds.dtype.itemsize


def open_for_rows(path: str | Path, largest_chunk: int) -> h5py.File:
    """A read-only handle whose chunk cache fits ``largest_chunk`` twice (a filtered chunk decodes once)."""
    from mmrebal.cache.format import open_cache

    return open_cache(path, rdcc_nbytes=max(MIN_CHUNK_CACHE, 2 * largest_chunk), rdcc_nslots=10007)


def raw_chunks(ds: h5py.Dataset) -> bool:
    """Whether each row is one unfiltered chunk in native byte order, so its stored bytes are the row."""
    return (
        ds.chunks == (1, *ds.shape[1:])
        and ds.id.get_create_plist().get_nfilters() == 0
        and ds.dtype.isnative
        and ds.dtype.kind in "biuf"
    )


def chunk_offsets(ds: h5py.Dataset) -> np.ndarray | None:
    """File offset of every row's chunk of a :func:`raw_chunks` array, or None when some row has no
    chunk of the full size (never written), so that reading it needs HDF5 (its fill value)."""
    if not raw_chunks(ds):
        return None
    offsets = np.full(ds.shape[0], -1, dtype=np.int64)
    size = chunk_bytes(ds)

    def visit(info: h5py.h5d.StoreInfo) -> None:
        if info.size == size:
            offsets[info.chunk_offset[0]] = info.byte_offset

    ds.id.chunk_iter(visit)
    return offsets if len(offsets) and offsets.min() >= 0 else None


class RowFile:
    """The cache file as plain bytes: rows of raw-chunk arrays read by offset, one descriptor per process.

    Rows up to ``GATHER_MAX`` bytes are gathered from a read-only ``mmap`` of the file through a
    strided view of it, one copy per row with the GIL released: a fresh batch by numpy's fancy
    index (:meth:`gather`), a given array by ``torch.index_select(out=)`` (:meth:`read`; numpy's
    fancy index cannot write into a given array without a second copy, and ``np.take`` first
    copies a strided source whole). torch splits such a copy over its intra-op threads, which
    made a main-process reader use 2 CPUs at a quarter of numpy's speed, so the fresh path that
    reader threads take stays numpy; reader processes (``mmrebal.data.ring``) run one torch thread.
    ``preadv`` per row would release and retake the GIL at every row, and with two reader threads
    each such hand-off costs more than reading a small row (avmnist rows: 2 threads read 4x slower
    than 1). Larger rows keep one ``preadv`` each: that streams from the page cache without
    faulting the file into this process's page tables, which matters for caches larger than memory.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.fd = os.open(self.path, os.O_RDONLY)
        self._bytes: torch.Tensor | None = None  # the mapped file, made on the first small-row read
        self._map: mmap.mmap | None = None
        self._windows: dict[int, torch.Tensor] = {}  # row size -> every byte offset as a row's start

    def _windows_of(self, size: int) -> torch.Tensor:
        """The mapped file viewed as one ``size``-byte row starting at every byte offset (no copy;
        made once per row size: building the view costs about a tenth of a small batch)."""
        if size not in self._windows:
            if self._bytes is None:
                self._map = mmap.mmap(self.fd, 0, prot=mmap.PROT_READ)
                with warnings.catch_warnings():  # a read-only buffer: these views are only ever read
                    warnings.simplefilter("ignore", UserWarning)
                    self._bytes = torch.frombuffer(self._map, dtype=torch.uint8)
            data = self._bytes
            self._windows[size] = data.as_strided((max(len(data) - size + 1, 0), size), (1, 1))
        return self._windows[size]

    def gather(
        self, offsets: np.ndarray, rows: np.ndarray, shape: tuple[int, ...], dtype: np.dtype
    ) -> np.ndarray:
        """Rows of at most ``GATHER_MAX`` bytes as a new ``[len(rows), *shape]`` array, the batch's
        only copy (gathering into a pooled buffer instead would copy every byte twice)."""
        size = math.prod(shape) * np.dtype(dtype).itemsize
        if not len(rows):
            return np.empty((0, *shape), dtype)
        windows, starts = self._starts(offsets, rows, size)
        return windows.numpy()[starts].view(dtype).reshape(len(rows), *shape)

    def _starts(self, offsets: np.ndarray, rows: np.ndarray, size: int) -> tuple[torch.Tensor, np.ndarray]:
        """The ``size``-byte windows of the mapped file and the rows' starts in them, checked."""
        windows, starts = self._windows_of(size), offsets[rows]
        if int(starts.max()) >= len(windows):
            raise OSError(f"{self.path}: a row lies past the end of the file; rebuild the cache")
        return windows, starts

    def read(self, offsets: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
        """Row ``rows[i]`` (its chunk at ``offsets[rows[i]]``) into ``out[i]``; any order, duplicates too."""
        if not len(rows):
            return
        flat = out.reshape(len(rows), -1).view(np.uint8)
        size = flat.shape[1]
        if gathered(size):
            windows, starts = self._starts(offsets, rows, size)
            torch.index_select(windows, 0, torch.from_numpy(starts), out=torch.from_numpy(flat))
            return
        for i, start in enumerate(offsets[rows].tolist()):
            got = os.preadv(self.fd, [flat[i]], start)
            if got != size:
                raise OSError(
                    f"{self.path}: row {rows[i]} is cut short ({got} of {size} bytes); rebuild the cache"
                )

    def close(self) -> None:
        self._bytes = self._map = None  # unmapped once no batch view still reads from it
        self._windows = {}
        os.close(self.fd)


def read_rows(ds: h5py.Dataset, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``ds[rows]`` in the asked order (duplicates allowed) into ``out``, through HDF5 (any filter)."""
    for i, row in enumerate(rows.tolist()):
        out[i] = ds[row]
    return out


def cache_bytes(path: str | Path) -> int:
    """Bytes of every per-sample array of a cache, uncompressed (what a preload of all splits holds)."""
    from mmrebal.cache.format import open_cache

    with open_cache(path) as f:
        arrays = [obj for group in f.values() if isinstance(group, h5py.Group) for obj in group.values()]
        return sum(int(np.prod(ds.shape)) * ds.dtype.itemsize for ds in arrays)
