"""Twitter2015 multimodal aspect sentiment in the TomBERT release layout.

``--root`` holds ``train.tsv``, ``dev.tsv`` and ``test.tsv`` (tab-separated, one header row, five
columns: index, label 0/1/2, image id, tweet text with ``$T$`` where the target stands, target) and
the images folder ``twitter2015_images/`` (``images=`` names another one). ``dev`` is the val split.
Labels 0/1/2 are negative/neutral/positive. ``target``: ``replace`` (default) puts the target back
in place of ``$T$`` and tokenises one sentence; ``pair`` does the same and adds the target as a second
segment, as TomBERT feeds its BERT. Sample ids are ``<split file stem>-<index>`` (a tweet with two
targets is two samples). Text and image handling: :mod:`mmrebal.prep.adapters.text_common`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmrebal.prep.adapters import ADAPTERS
from mmrebal.prep.adapters.base import LayoutError, PrepIssue, SourceItem, require_folder
from mmrebal.prep.adapters.text_common import DEFAULT_MAX_LENGTH, ImageTextAdapter, image_item

SPLIT_FILES = {"train.tsv": "train", "dev.tsv": "val", "test.tsv": "test"}
COLUMNS = ("index", "label", "image id", "text", "target")
CLASSES = ("negative", "neutral", "positive")
TARGET_MODES = ("replace", "pair")


@ADAPTERS.register("twitter2015")
class Twitter2015Adapter(ImageTextAdapter):
    name = "twitter2015"
    classes = CLASSES

    def scan(
        self,
        root: Path | None,
        images: str | Path | None = None,
        target: str = "replace",
        text_model: str | Path | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        image_size: int | None = None,
        crop: str = "resize",
        **options: Any,
    ) -> tuple[list[SourceItem], list[PrepIssue]]:
        root = require_folder(root, "--root must hold train.tsv, dev.tsv, test.tsv")
        for name in SPLIT_FILES:
            if not (root / name).is_file():
                raise LayoutError(f"{root / name}: missing split file; --root must be the TomBERT folder")
        image_dir = Path(images) if images else root / "twitter2015_images"
        if not image_dir.is_dir():
            raise LayoutError(f"{image_dir}: missing images folder; pass images=FOLDER if it is elsewhere")
        if target not in TARGET_MODES:
            raise LayoutError(f"target must be one of {', '.join(TARGET_MODES)}, got {target!r}")
        self.configure(text_model, max_length, image_size, crop)
        items: list[SourceItem] = []
        issues: list[PrepIssue] = []
        seen: set[str] = set()
        for name, split in SPLIT_FILES.items():
            for result in _read_split(root / name, split, image_dir, target, seen):
                (items if isinstance(result, SourceItem) else issues).append(result)
        return items, issues


def _read_split(
    path: Path, split: str, image_dir: Path, target_mode: str, seen: set[str]
) -> list[SourceItem | PrepIssue]:
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    header = lines[0].split("\t") if lines else []
    if len(header) < len(COLUMNS):
        raise LayoutError(
            f"{path}: header has {len(header)} column(s), expected {len(COLUMNS)} "
            f"({', '.join(COLUMNS)}); missing column {COLUMNS[len(header)]!r}"
        )
    out: list[SourceItem | PrepIssue] = []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        fields = line.split("\t")
        if len(fields) != len(COLUMNS):
            out.append(
                PrepIssue(where, str(path), f"{len(fields)} tab-separated fields, expected {len(COLUMNS)}")
            )
            continue
        index, label, image_id, text, target = (f.strip() for f in fields)
        if label not in ("0", "1", "2"):
            out.append(PrepIssue(where, str(path), f"unknown label {label!r} (known: 0, 1, 2); fix the line"))
            continue
        sentence = text.replace("$T$", target)
        pair = target if target_mode == "pair" else None
        sample_id = f"{path.stem}-{index}"
        out.append(
            image_item(
                where, sample_id, CLASSES[int(label)], split, image_dir / image_id, sentence, seen, pair
            )
        )
    return out
