"""Reading rows of one-sample-chunk HDF5 arrays at file speed.

h5py's list selection (``ds[[3, 1, 7]]``) builds one hyperslab per index and costs ~70x a plain
per-row loop at 224x224 frame sizes (h5py issues 293 and 2536). Each cache row is exactly one chunk,
so an unfiltered array is read chunk by chunk straight into the caller's batch buffer
(``read_direct_chunk``: no selection, no chunk cache, no extra copy); a filtered (compressed) array
falls back to one ``ds[row]`` per row, decoded through a chunk cache that holds a whole chunk.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

MIN_CHUNK_CACHE = 1 << 20  # HDF5's default chunk cache size


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


def read_rows(ds: h5py.Dataset, rows: np.ndarray, raw: bool) -> np.ndarray:
    """``ds[rows]`` in the asked order (duplicates allowed) into one preallocated array."""
    out = np.empty((len(rows), *ds.shape[1:]), dtype=ds.dtype)
    if raw and out.size:
        flat = out.reshape(len(rows), -1).view(np.uint8)
        zeros = (0,) * (ds.ndim - 1)
        for i, row in enumerate(rows):
            ds.id.read_direct_chunk((int(row), *zeros), out=flat[i])
    else:
        for i, row in enumerate(rows):
            out[i] = ds[int(row)]
    return out


def cache_bytes(path: str | Path) -> int:
    """Bytes of every per-sample array of a cache, uncompressed (what a preload of all splits holds)."""
    from mmrebal.cache.format import open_cache

    with open_cache(path) as f:
        arrays = [obj for group in f.values() if isinstance(group, h5py.Group) for obj in group.values()]
        return sum(int(np.prod(ds.shape)) * ds.dtype.itemsize for ds in arrays)
