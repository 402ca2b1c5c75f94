"""Tiny learnable caches for tests, written through the real journal + assembly path.

Each class has a fixed random pattern per modality; a sample is its class pattern plus noise, with
audio noisier than visual so the modalities learn at different speeds (as in the papers' datasets).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from mmrebal.cache.writer import Entry, SampleJournal, assemble

# modality -> (cache kind, array key, per-sample shape, noise level)
_LAYOUT = {
    "audio": ("spectrogram", "audio/spec", (16, 12), 1.5),
    "visual": ("frames", "visual/frames", (2, 16, 16, 3), 0.6),
    "image": ("image", "image/pixels", (16, 16, 3), 0.6),
    "rgb": ("frames", "rgb/frames", (2, 16, 16, 3), 0.6),
    "depth": ("frames", "depth/frames", (2, 16, 16, 3), 1.2),
}


def _sample(kind: str, pattern: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    x = pattern + noise * rng.standard_normal(pattern.shape)
    if kind == "spectrogram":
        return x.astype(np.float32)
    return np.clip(128 + 40 * x, 0, 255).astype(np.uint8)


def build_tiny_cache(
    path: Path,
    n: int = 96,
    modalities: tuple[str, ...] = ("audio", "visual"),
    num_classes: int = 3,
    seed: int = 0,
    compression: str | None = None,
) -> Path:
    """Write a cache of ``n`` samples (60/20/20 train/val/test, classes round-robin) to ``path``
    (``compression``: ``mmrebal.cache.writer.assemble``'s)."""
    path = Path(path)
    unknown = [m for m in modalities if m not in _LAYOUT]
    if unknown:
        raise ValueError(f"tiny caches support {', '.join(_LAYOUT)}, not {', '.join(unknown)}")
    rng = np.random.default_rng(seed)
    patterns = {m: rng.standard_normal((num_classes, *_LAYOUT[m][2])) for m in modalities}
    key = f"tiny-{n}-{modalities}-{num_classes}-{seed}"
    journal = SampleJournal(path, hashlib.sha1(key.encode()).hexdigest())
    entries = []
    for i in range(n):
        label = i % num_classes
        fraction = (i // num_classes) / max(n // num_classes, 1)
        split = "train" if fraction < 0.6 else "val" if fraction < 0.8 else "test"
        arrays = {}
        for m in modalities:
            kind, array_key, _, noise = _LAYOUT[m]
            arrays[array_key] = _sample(kind, patterns[m][label], noise, rng)
        sample_id = f"s{i:05d}"
        journal.write(sample_id, arrays)
        entries.append(Entry(sample_id, label, split))
    assemble(
        journal,
        entries,
        path,
        class_names=[f"c{k}" for k in range(num_classes)],
        modality_kinds={m: _LAYOUT[m][0] for m in modalities},
        attrs={"dataset": "tiny", "preset": "tiny"},
        compression=compression,
    )
    journal.remove()
    return path
