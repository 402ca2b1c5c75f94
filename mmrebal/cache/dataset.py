"""A torch ``Dataset`` over one split of a cache.

The file is opened lazily, once per process (DataLoader workers each get their own handle), and
only the requested modalities' groups are read. ``__getitems__`` reads a whole batch, row by row into
one preallocated tensor per cache array (``mmrebal.cache.rows``: by file offset outside the GIL for
unfiltered arrays, through HDF5 for filtered ones); it is what a loader calls with a batch of rows.
With ``pin_memory`` those tensors are allocated pinned (in the main process only: a forked worker
must not touch CUDA), so the host-to-GPU copy starts from them without another copy.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from mmrebal.cache.buffers import POOL
from mmrebal.cache.format import open_cache, read_info, split_rows
from mmrebal.cache.jpeg import EncodedFrames, batch_of, decoded_shape, encoded
from mmrebal.cache.rows import RowFile, chunk_bytes, chunk_offsets, gathered, open_for_rows, read_rows

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _from_arrays(kind: str, arrays: dict[str, torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
    """A modality's batched cache arrays as a loader ships them: tokens a dict, the others one tensor."""
    if kind == "tokens":
        return arrays
    if kind in ("frames", "image", "spectrogram"):
        (value,) = arrays.values()
        return value
    raise ValueError(f"unknown modality kind {kind!r}")


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype)).dtype


@functools.lru_cache(maxsize=16)
def _imagenet(device: torch.device, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std shaped to broadcast over a channel axis at ``-3``, made once per device."""
    shape = (1,) * (ndim - 3) + (3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(shape).to(device)
    std = torch.tensor(IMAGENET_STD).view(shape).to(device)
    return mean, std


def model_input(kind: str, value: Any) -> torch.Tensor | dict[str, torch.Tensor]:
    """A stored-layout batch tensor -> model input, on whatever device it sits.

    frames uint8 [B, T, H, W, 3] -> float [B, T, 3, H, W] and image [B, H, W, 3] -> [B, 3, H, W], both
    ImageNet-normalised (JPEG batches decoded first, on their device); spectrogram [B, F, T] -> float
    [B, 1, F, T]; tokens -> int64 dict.
    """
    if isinstance(value, EncodedFrames):
        value = value.decode()
    if kind == "frames" or kind == "image":
        order = (0, 1, 4, 2, 3) if kind == "frames" else (0, 3, 1, 2)
        x = value.permute(*order).float().div_(255.0)
        mean, std = _imagenet(x.device, x.ndim)
        return (x - mean) / std
    if kind == "spectrogram":
        return value.float().unsqueeze(1)
    if kind == "tokens":
        return {key: v.long() for key, v in value.items()}
    raise ValueError(f"unknown modality kind {kind!r}")


def model_inputs(batch: dict[str, Any], kinds: dict[str, str]) -> dict[str, Any]:
    """Every modality of a loader batch converted by :func:`model_input`; ``idx``/``label`` untouched."""
    return {key: model_input(kinds[key], value) if key in kinds else value for key, value in batch.items()}


class CacheDataset(Dataset):
    """One split of a cache; item ``i`` is ``{"idx": i, "label": y, <modality>: tensor, ...}``.

    ``idx`` is the position inside this split (what samplers index), not the HDF5 row. Modalities
    come in the cache's stored layout and dtype (frames and images uint8, channels last), so workers
    and pinned-memory copies move 4x fewer bytes; :func:`model_inputs` converts them where the batch
    lands (``mmrebal.data.device.device_batch``).
    ``preload=True`` reads the split's arrays into memory once (small caches, CPU runs);
    ``pin_memory`` allocates batches pinned in the main process (the batches go to a GPU).
    """

    def __init__(
        self,
        path: str | Path,
        split: str,
        modalities: Sequence[str] | None = None,
        preload: bool = False,
        pin_memory: bool = False,
    ) -> None:
        self.path = Path(path)
        self.info = read_info(self.path)
        self.split = split
        chosen = list(modalities) if modalities else list(self.info.modalities)
        unknown = [m for m in chosen if m not in self.info.modalities]
        if unknown:
            raise ValueError(
                f"{self.path}: no modality {', '.join(unknown)}; "
                f"the cache has {', '.join(self.info.modalities)}"
            )
        self.modalities = chosen
        with open_cache(self.path) as f:
            self.rows = split_rows(f, split)
            self.labels = np.asarray(f["label"][:])[self.rows]
            ids = np.asarray(f["sample_id"][:])[self.rows]
            self.array_names = {m: list(f[m].keys()) for m in self.modalities}
            self.keys = [f"{m}/{a}" for m in self.modalities for a in self.array_names[m]]
            self._largest_chunk = max((chunk_bytes(f[k]) for k in self.keys), default=0)
            self._layout = {k: (f[k].shape[1:], f[k].dtype) for k in self.keys if not encoded(f[k])}
            self._encoded = {k: decoded_shape(f[k]) for k in self.keys if encoded(f[k])}  # JPEG arrays
            self._offsets = {k: chunk_offsets(f[k]) for k in self.keys}  # None: read through HDF5
        self.sample_ids = [i.decode() for i in ids]
        self.pin_memory = pin_memory
        self._file: h5py.File | None = None
        self._row_file: RowFile | None = None
        self._arrays: dict[str, h5py.Dataset] = {}
        self._pid: int | None = None
        self._memory: dict[str, np.ndarray] | None = None
        if preload and len(self.rows):
            every = np.arange(len(self.rows))
            self._memory = {
                k: self._jpeg_rows(k, every)
                if k in self._encoded
                else self._fill(k, every, np.empty((len(every), *self._layout[k][0]), self._layout[k][1]))
                for k in self.keys
            }
            self.close()

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def thread_safe(self) -> bool:
        """Whether batches read without h5py (preloaded, or every array by offset), so reader threads
        of one process read them in parallel (``mmrebal.data.prefetch``)."""
        return self._memory is not None or all(o is not None for o in self._offsets.values())

    def open(self) -> None:
        """This process's handles (one per process, reopened after a fork); reader threads share them."""
        if self._pid == os.getpid():
            return
        self._file, self._row_file, self._pid = None, None, os.getpid()  # a parent's, not ours to close
        if any(o is None for o in self._offsets.values()):
            self._file = open_for_rows(self.path, self._largest_chunk)
            self._arrays = {k: self._file[k] for k, o in self._offsets.items() if o is None}
        if any(o is not None for o in self._offsets.values()):
            self._row_file = RowFile(self.path)

    def close(self) -> None:
        if self._pid == os.getpid():
            if self._file is not None:
                self._file.close()
            if self._row_file is not None:
                self._row_file.close()
        self._file, self._row_file, self._arrays, self._pid = None, None, {}, None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_file=None, _row_file=None, _arrays={}, _pid=None)
        return state

    def _batch_tensor(self, key: str, n: int, pin: bool) -> torch.Tensor:
        """Where ``n`` rows of ``key`` are read: pinned (CUDA) or a pooled buffer in the main process,
        a fresh array in a worker process (which copies it into shared memory anyway)."""
        shape, dtype = self._layout[key]
        if pin:
            return torch.empty((n, *shape), dtype=_torch_dtype(dtype), pin_memory=True)
        if get_worker_info() is None:
            return POOL.tensor((n, *shape), dtype)
        return torch.from_numpy(np.empty((n, *shape), dtype))

    def _jpeg_rows(self, key: str, positions: np.ndarray) -> np.ndarray:
        """The byte strings of a JPEG array's rows, as an object array ``[len(positions), *leading]``."""
        if self._memory is not None:
            return self._memory[key][positions]
        self.open()
        ds = self._arrays[key]
        out = np.empty((len(positions), *ds.shape[1:]), dtype=object)
        for i, row in enumerate(self.rows[positions].tolist()):
            out[i] = ds[row]
        return out

    def _read(self, key: str, positions: np.ndarray, pin: bool) -> torch.Tensor | EncodedFrames:
        """Rows for split positions, in the order asked, duplicates included, into a new tensor
        (JPEG arrays: their undecoded batch)."""
        if key in self._encoded:
            return batch_of(self._jpeg_rows(key, positions), self._encoded[key])
        shape, dtype = self._layout[key]
        if not pin and gathered(math.prod(shape) * dtype.itemsize):  # math.prod: np.prod costs ~5 us a call
            return torch.from_numpy(self._fill(key, positions, None))
        out = self._batch_tensor(key, len(positions), pin)
        self._fill(key, positions, out.numpy())
        return out

    def _fill(self, key: str, positions: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        """The rows at split ``positions`` from memory, file offsets or HDF5, into every byte of
        ``out``, or with ``out=None`` into a fresh array: for small rows one fresh gather is the
        batch's only copy, where gathering into a pooled buffer would copy each byte twice."""
        shape, dtype = self._layout[key]
        if self._memory is not None:
            memory = self._memory[key]
            if out is None:
                return memory[positions]
            if len(positions) and (positions.min() < 0 or positions.max() >= len(memory)):
                raise IndexError(f"split position out of range 0..{len(memory) - 1} of {key}")
            return np.take(memory, positions, axis=0, out=out, mode="clip")  # "raise" copies out once more
        self.open()
        offsets, rows = self._offsets[key], self.rows[positions]
        if offsets is None:
            fresh = np.empty((len(rows), *shape), dtype) if out is None else out
            return read_rows(self._arrays[key], rows, fresh)
        if out is None:
            return self._row_file.gather(offsets, rows, shape, dtype)
        self._row_file.read(offsets, rows, out)
        return out

    def __getitems__(self, positions: Sequence[int]) -> dict[str, Any]:
        pos = np.asarray(positions, dtype=np.int64)
        pin = self.pin_memory and get_worker_info() is None
        return self.batch_of(pos, {key: self._read(key, pos, pin) for key in self.keys})

    def batch_of(self, positions: np.ndarray, arrays: dict[str, Any]) -> dict[str, Any]:
        """The loader batch for split ``positions`` whose cache arrays (by key) are already read."""
        batch: dict[str, Any] = {
            "idx": torch.from_numpy(positions.copy()),
            "label": torch.from_numpy(self.labels[positions].astype(np.int64)),
        }
        for m in self.modalities:
            mine = {a: arrays[f"{m}/{a}"] for a in self.array_names[m]}
            batch[m] = _from_arrays(self.info.modalities[m], mine)
        return batch

    def row_layout(self, key: str) -> tuple[tuple[int, ...], np.dtype] | None:
        """(row shape, dtype) of a cache array as batches hold it; None for JPEG arrays (byte strings)."""
        return self._layout.get(key)

    def read_into(self, key: str, positions: np.ndarray, out: np.ndarray) -> None:
        """The rows of ``key`` at split ``positions``, in order, duplicates included, into ``out``
        (``[len(positions), *row shape]``; any process, e.g. a shared-memory buffer of a reader)."""
        self._fill(key, positions, out)

    def __getitem__(self, position: int) -> dict[str, Any]:
        batch = self.__getitems__([position])
        return {k: _first(v) for k, v in batch.items()}


def _first(value: Any) -> Any:
    """The first row of a batch value (a JPEG batch decoded on the CPU)."""
    if isinstance(value, dict):
        return {k: v[0] for k, v in value.items()}
    return (value.decode() if isinstance(value, EncodedFrames) else value)[0]


def batch_collate(batch: dict[str, Any]) -> dict[str, Any]:
    """Collate for ``__getitems__`` output, which is already a batch."""
    return batch
