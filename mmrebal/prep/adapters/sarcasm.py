"""Multimodal sarcasm detection (Cai et al., 2019) in its ``text_json_final`` release layout.

``--root`` holds ``text_json_final/train.txt``, ``valid.txt`` and ``test.txt`` (``valid`` is the val
split) and the images ``dataset_image/<image_id>.jpg``. Each line is a Python-literal list: train lines
are ``[image_id, text, label]``; valid/test lines may carry a fourth field,
``[image_id, text, other, label]`` -- the label is always the LAST field (0 non-sarcastic,
1 sarcastic) and the extra field is kept in the item's meta as ``extra``. Sample ids are the image
ids. Text and image handling: :mod:`mmrebal.prep.adapters.text_common`.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from mmrebal.prep.adapters import ADAPTERS
from mmrebal.prep.adapters.base import LayoutError, PrepIssue, SourceItem, require_folder
from mmrebal.prep.adapters.text_common import DEFAULT_MAX_LENGTH, ImageTextAdapter, image_item

TEXT_DIR = "text_json_final"
IMAGE_DIR = "dataset_image"
SPLIT_FILES = {"train.txt": "train", "valid.txt": "val", "test.txt": "test"}
CLASSES = ("non-sarcastic", "sarcastic")


@ADAPTERS.register("sarcasm")
class SarcasmAdapter(ImageTextAdapter):
    name = "sarcasm"
    classes = CLASSES

    def scan(
        self,
        root: Path | None,
        text_model: str | Path | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        image_size: int | None = None,
        crop: str = "resize",
        **options: Any,
    ) -> tuple[list[SourceItem], list[PrepIssue]]:
        root = require_folder(root, f"--root must hold {TEXT_DIR}/ and {IMAGE_DIR}/")
        for folder in (TEXT_DIR, IMAGE_DIR):
            if not (root / folder).is_dir():
                raise LayoutError(
                    f"{root / folder}: missing folder; --root must be the sarcasm release folder"
                )
        for name in SPLIT_FILES:
            if not (root / TEXT_DIR / name).is_file():
                raise LayoutError(f"{root / TEXT_DIR / name}: missing split file")
        self.configure(text_model, max_length, image_size, crop)
        items: list[SourceItem] = []
        issues: list[PrepIssue] = []
        seen: set[str] = set()
        for name, split in SPLIT_FILES.items():
            path = root / TEXT_DIR / name
            for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
                if line.strip():
                    result = _parse_line(line, f"{name} line {number}", path, split, root / IMAGE_DIR, seen)
                    (items if isinstance(result, SourceItem) else issues).append(result)
        return items, issues


def _parse_line(
    line: str, where: str, path: Path, split: str, image_dir: Path, seen: set[str]
) -> SourceItem | PrepIssue:
    try:
        record = ast.literal_eval(line.strip())
    except (ValueError, SyntaxError):
        return PrepIssue(where, str(path), "not a Python-literal list [image_id, text, label]; fix the line")
    if not isinstance(record, list | tuple) or len(record) not in (3, 4):
        return PrepIssue(where, str(path), "expected [image_id, text, label] or [image_id, text, x, label]")
    image_id, text, label = str(record[0]).strip(), str(record[1]), str(record[-1]).strip()
    if label not in ("0", "1"):
        return PrepIssue(where, str(path), f"unknown label {label!r} (known: 0, 1); fix the line")
    result = image_item(
        where, image_id, CLASSES[int(label)], split, image_dir / f"{image_id}.jpg", text, seen
    )
    if isinstance(result, SourceItem) and len(record) == 4:
        result.meta["extra"] = record[2]
    return result
