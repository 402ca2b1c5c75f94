"""The HDF5 cache format: one file per dataset+preset, one group per modality.

Layout (``h5ls -r``)::

    /label        int64 [N]
    /split        bytes [N]     b"train" | b"val" | b"test"
    /sample_id    bytes [N]     the source file stem (or manifest id)
    /class_names  bytes [C]
    /<modality>/  group with attribute ``kind`` and one or more per-sample arrays:
        visual/frames      uint8   [N, T, H, W, 3]   kind="frames" (or JPEG byte strings [N, T]:
                                                  ``prep --compression jpeg``, mmrebal.cache.jpeg)
        audio/spec         float32 [N, F, T]         kind="spectrogram"
        text/input_ids     int64   [N, L]            kind="tokens" (+ text/attention_mask)
        image/pixels       uint8   [N, H, W, 3]      kind="image"

Every per-sample array is chunked one sample per chunk so a random read touches exactly one chunk,
and a read of one modality never touches another group.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mmrebal.cache.jpeg import decoded_shape

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
MODALITY_KINDS = {"frames", "spectrogram", "tokens", "image"}


class CacheError(RuntimeError):
    """A cache that cannot be used; the message says which file and what to do."""


@dataclass
class CacheInfo:
    """What a cache holds, read from its metadata without touching per-sample arrays."""

    path: Path
    n: int
    modalities: dict[str, str]  # modality name -> kind
    shapes: dict[str, tuple[int, ...]]  # "group/array" -> per-sample shape
    class_names: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    split_counts: dict[str, int] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _decode(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def attr_value(value: Any) -> Any:
    """HDF5 attributes hold scalars and strings; nested parameters are stored as JSON."""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True)
    if value is None:
        return "null"
    return value


def read_attrs(f: h5py.File) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in f.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str) and value[:1] in "[{":
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        out[key] = value
    return out


def open_cache(path: str | Path, **options: Any) -> h5py.File:
    """Open a cache read-only, refusing files that are missing, not HDF5 or of an unknown version.

    ``options`` go to ``h5py.File`` (the chunk cache settings of a reader)."""
    path = Path(path)
    if not path.exists():
        raise CacheError(f"{path}: no such cache; build it with `mmrebal prep DATASET --out {path}`")
    try:
        f = h5py.File(path, "r", **options)
    except OSError as exc:
        raise CacheError(
            f"{path}: not a readable HDF5 cache ({exc}); rebuild it with `mmrebal prep`"
        ) from exc
    version = f.attrs.get("format_version")
    if isinstance(version, np.generic):
        version = version.item()  # the message should say 2, not np.int64(2)
    if version != FORMAT_VERSION:
        f.close()
        raise CacheError(
            f"{path}: cache format version {version!r} is not supported by this mmrebal "
            f"(expects {FORMAT_VERSION}); rebuild it with `mmrebal prep`"
        )
    return f


def read_info(path: str | Path) -> CacheInfo:
    with open_cache(path) as f:
        modalities: dict[str, str] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        for name, obj in f.items():
            if isinstance(obj, h5py.Group):
                modalities[name] = str(obj.attrs["kind"])
                for array_name, ds in obj.items():
                    shapes[f"{name}/{array_name}"] = decoded_shape(ds)
        splits = _decode(f["split"][:])
        return CacheInfo(
            path=Path(path),
            n=int(f["label"].shape[0]),
            modalities=modalities,
            shapes=shapes,
            class_names=_decode(f["class_names"][:]),
            attrs=read_attrs(f),
            split_counts={s: splits.count(s) for s in SPLITS},
        )


def split_rows(f: h5py.File, split: str) -> np.ndarray:
    """Row numbers of one split, in file order."""
    if split not in SPLITS:
        raise CacheError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return np.flatnonzero(np.asarray(f["split"][:]) == split.encode())
