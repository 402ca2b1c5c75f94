"""Small real image+text manifests for tests: PNG glyphs whose dominant colour is the class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

NAMES = ("red circle", "blue square", "green star")


def png(path: Path, label: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (24, 24, 3), dtype=np.uint8)
    pixels[:, :, label] += 150  # the class is the dominant colour channel
    Image.fromarray(pixels).save(path)


def image_text_manifest(root: Path, count: int = 18) -> Path:
    rows = ["id,label,split,image,text"]
    for n in range(count):
        label = n % 3
        png(root / f"g{n}.png", label, n)
        split = "test" if n % 6 == 0 else ""
        rows.append(f"g{n},{NAMES[label].split()[0]},{split},g{n}.png,a {NAMES[label]} glyph number {n}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root / "manifest.csv"
