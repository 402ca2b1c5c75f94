"""Where mmrebal keeps data it builds for the user (the embedded default cache)."""

from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    """``$MMREBAL_HOME`` or ``~/.cache/mmrebal``: built caches that are not the user's own files."""
    return Path(os.environ.get("MMREBAL_HOME", Path.home() / ".cache" / "mmrebal")).expanduser()


def default_cache_path(dataset: str = "avmnist") -> Path:
    return data_home() / f"{dataset}.h5"
