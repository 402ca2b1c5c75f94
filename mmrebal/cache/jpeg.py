"""JPEG-encoded frames and images in the cache (``mmrebal prep --compression jpeg``).

Kinetics-Sounds-sized caches hold ~0.45-1.5 MB of raw uint8 frames per clip; JPEG stores them at a
fraction of that (``benchmarks/loader.py`` measures size and speed against raw). Each frame is one
variable-length byte string of an ``[N, T]`` (frames) or ``[N]`` (image) HDF5 array, which keeps the
array's name and records the decoded per-sample shape in the ``decoded_shape`` attribute, so
``read_info`` and the models see the same shapes as with raw frames. Only uint8 RGB arrays are
encoded (spectrograms and tokens stay raw); JPEG is lossy (quality ``QUALITY``: a mean absolute
error of about 1-2 grey levels on natural frames).

A loader ships a batch's bytes undecoded (:class:`EncodedFrames`, a few kB per frame); the decode
runs where the batch lands, batched with ``torchvision.io.decode_jpeg``: on the GPU (nvJPEG) when the
training device is CUDA, on the CPU otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import h5py
import numpy as np

if TYPE_CHECKING:  # torch loads lazily: prep's worker processes import this module but never need it
    import torch

QUALITY = 90
BYTES = h5py.vlen_dtype(np.uint8)


def encodable(value: np.ndarray) -> bool:
    """Whether a per-sample array is RGB frames or an image (uint8, ``[..., H, W, 3]``)."""
    return value.dtype == np.uint8 and value.ndim >= 3 and value.shape[-1] == 3


def encoded(ds: h5py.Dataset) -> bool:
    return "decoded_shape" in ds.attrs


def decoded_shape(ds: h5py.Dataset) -> tuple[int, ...]:
    """The per-sample shape of an array as a reader gets it (decoded, for a JPEG array)."""
    return tuple(int(v) for v in ds.attrs["decoded_shape"]) if encoded(ds) else tuple(ds.shape[1:])


def create(group: h5py.Group, name: str, n: int, value: np.ndarray) -> h5py.Dataset:
    """An ``[n, *leading]`` array of JPEG byte strings for per-sample arrays shaped like ``value``."""
    lead = value.shape[:-3]
    ds = group.create_dataset(name, shape=(n, *lead), dtype=BYTES, chunks=(1, *lead))
    ds.attrs["decoded_shape"] = value.shape
    ds.attrs["quality"] = QUALITY
    return ds


def write(ds: h5py.Dataset, row: int, value: np.ndarray) -> None:
    """One sample's ``[..., H, W, 3]`` uint8 array into row ``row``, a JPEG byte string per image
    (written one by one: h5py would make equally long strings one 2-D array)."""
    import torch

    images = torch.from_numpy(np.ascontiguousarray(value)).reshape(-1, *value.shape[-3:]).permute(0, 3, 1, 2)
    from torchvision.io import encode_jpeg

    lead = value.shape[:-3]
    for index, data in zip(np.ndindex(*lead), encode_jpeg(list(images), quality=QUALITY), strict=True):
        ds[(row, *index)] = data.numpy()


@dataclass
class EncodedFrames:
    """A batch of JPEG frames as the loader ships it: every frame's bytes in one tensor (one transfer
    from a worker process), ``lengths`` splitting it into frames in ``[B, T]`` row order.

    ``to(device)`` only says where :meth:`decode` will run (the bytes stay on the host, where
    ``decode_jpeg`` reads them from, also for nvJPEG).
    """

    data: torch.Tensor  # uint8, the frames' JPEG byte strings back to back
    lengths: list[int]
    shape: tuple[int, ...]  # the decoded batch shape, [B, T, H, W, 3] or [B, H, W, 3]
    device: torch.device | str = "cpu"

    def to(self, device: torch.device | str, non_blocking: bool = False) -> EncodedFrames:
        return EncodedFrames(self.data, self.lengths, self.shape, device)

    def decode(self) -> torch.Tensor:
        """The batch as a stored-layout uint8 tensor on ``device`` (channels last, as raw frames)."""
        import torch
        from torchvision.io import decode_jpeg

        if not self.lengths:
            return torch.empty(self.shape, dtype=torch.uint8, device=self.device)
        frames = list(torch.split(self.data, self.lengths))
        images = torch.stack(decode_jpeg(frames, device=self.device))  # [B*T, 3, H, W]
        return images.permute(0, 2, 3, 1).reshape(self.shape)


def batch_of(rows: np.ndarray, shape: tuple[int, ...]) -> EncodedFrames:
    """Rows of an encoded array (an object array ``[B, *leading]`` of byte arrays) as one batch."""
    import torch

    frames = list(rows.reshape(-1))
    data = np.concatenate(frames) if frames else np.zeros(0, np.uint8)
    return EncodedFrames(torch.from_numpy(data), [len(b) for b in frames], (len(rows), *shape))
