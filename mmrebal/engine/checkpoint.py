"""Checkpoints that load with ``torch.load(weights_only=True)`` and are written atomically.

``weights_only`` loading only accepts tensors and primitive containers, so numpy arrays (sampler
states, numpy's RNG) are stored as ``{"__ndarray__": tensor}`` and numpy scalars as Python scalars;
:func:`load_checkpoint` turns them back. A crash during a save leaves the previous file intact
because the new one is written beside it and renamed into place only when complete.
"""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmrebal.engine.config import TrainConfig, config_from_dict
from mmrebal.storage import atomic_write_bytes, writing

_ARRAY = "__ndarray__"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read; the message names the file and what to do."""


def to_safe(obj: Any) -> Any:
    """``obj`` with numpy values replaced by tensors/Python scalars (reversible with :func:`from_safe`)."""
    if isinstance(obj, np.ndarray):
        return {_ARRAY: torch.from_numpy(np.ascontiguousarray(obj).copy())}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: to_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_safe(v) for v in obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def from_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_ARRAY}:
            return obj[_ARRAY].cpu().numpy()
        return {k: from_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(from_safe(v) for v in obj)
    return obj


def rng_state() -> dict[str, Any]:
    """Every RNG the run draws from: Python, numpy's global, torch CPU and each CUDA device."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(legacy=False),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temp file in the same folder, fsync, rename).

    Serialised in memory first: torch's own file writer reports a full disk as an opaque
    ``RuntimeError``, a plain write as the ``OSError`` that :mod:`mmrebal.storage` turns into one line.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(to_safe(state), buffer)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`, loaded with ``weights_only=True``; anything
    else is one :class:`CheckpointError` line (never torch's advice to unpickle the file)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint; train first or pass --checkpoint PATH")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused a Python object: it is never executed
        raise CheckpointError(
            f"{path}: holds Python objects besides tensors, so it was not written by mmrebal and is not "
            "loaded (loading it could run code); pass a checkpoint that `mmrebal train` wrote"
        ) from None
    except Exception as exc:  # torch raises several types for truncated or foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first}); it may be truncated") from None
    return from_safe(state)


RUN_KEYS = ("config", "model", "method", "run")


def load_run_checkpoint(path: Path) -> tuple[dict[str, Any], TrainConfig]:
    """A checkpoint of ``mmrebal train`` and the config it was trained with, checked key by key."""
    state = load_checkpoint(path)
    missing = [k for k in RUN_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(
            f"{path}: not a checkpoint of `mmrebal train` (no {', '.join(missing)}: a plain state_dict or "
            "another program's file); pass RUN_DIR/checkpoints/best.pt or last.pt"
        )
    return state, config_from_dict(state["config"], str(path))
