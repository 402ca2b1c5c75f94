"""Still images (PIL) resized to a preset size, as uint8 [H, W, 3]."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmrebal.media import MediaError


def read_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: no such file; check the path")
    height, width = size
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise MediaError(f"{path}: cannot decode image ({err}); the file is corrupt, re-export it") from None
