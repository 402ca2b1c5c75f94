"""Device choice, batch transfer and autocast: the only places that know about CUDA."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch

from mmrebal.cache.dataset import model_inputs
from mmrebal.cache.jpeg import EncodedFrames


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is an error with one clear line."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device {name!r}: choose auto, cpu or cuda")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible; use --device cpu or auto")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def move_batch(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors (also nested, e.g. token inputs) onto ``device``; non-blocking from pinned memory. A JPEG
    batch is told where it will be decoded (``mmrebal.cache.jpeg``)."""
    non_blocking = device.type == "cuda"
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if torch.is_tensor(value) or isinstance(value, EncodedFrames):
            out[key] = value.to(device, non_blocking=non_blocking)
        elif isinstance(value, dict):
            out[key] = move_batch(value, device)
        else:
            out[key] = value
    return out


def device_batch(batch: dict[str, Any], kinds: dict[str, str], device: torch.device) -> dict[str, Any]:
    """A loader batch onto ``device`` as model input (``kinds``: modality -> cache kind).

    The uint8 -> float conversion and the normalisation run here, on the training device, after the
    transfer; on CPU the operations (and so the numbers) are those the workers used to run.
    """
    return model_inputs(move_batch(batch, device), kinds)


def autocast_factory(device: torch.device, bf16: bool) -> Callable[[], AbstractContextManager]:
    """A zero-argument factory of the autocast context for forward passes (bf16 when asked)."""
    if not bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
