"""Twitter2015 multimodal aspect sentiment, read as the TomBERT release ships it.

``--root`` is TomBERT's ``absa_data/twitter2015/`` (or the zip's ``IJCAI2019_data/twitter2015/``):
``train.tsv``, ``dev.tsv`` and ``test.tsv``, tab-separated, LF, one header line that is skipped
whatever it says (TomBERT's loader skips line 1 too; ``test.tsv``'s header has 4 names though its
rows have 5 fields) and data rows of exactly five fields: index, label 0/1/2, image id, tweet text
with ``$T$`` where the target stands, target. ``dev`` is the val split. The images are in
``<root>/twitter2015_images/`` or, as the zip lays them out, the sibling ``<root>/../twitter2015_images/``
(``images=`` names another folder). Labels 0/1/2 are negative/neutral/positive.

``target``: ``replace`` (default) puts the target in place of ``$T$`` and tokenises one sentence;
``pair`` does the same and adds the target as a second segment; ``tombert`` is TomBERT's own input:
the sentence lowercased with the literal ``$T$`` kept as segment A and the lowercased target as
segment B. Sample ids are ``<split file stem>-<index>`` (a tweet with two targets is two samples).
Text and image handling: :mod:`mmrebal.prep.adapters.text_common`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmrebal.prep.adapters import ADAPTERS
from mmrebal.prep.adapters.base import LayoutError, PrepIssue, SourceItem, require_folder
from mmrebal.prep.adapters.text_common import DEFAULT_MAX_LENGTH, ImageTextAdapter, image_item

SPLIT_FILES = {"train.tsv": "train", "dev.tsv": "val", "test.tsv": "test"}
FIELDS = ("index", "label", "image id", "text", "target")
CLASSES = ("negative", "neutral", "positive")
TARGET_MODES = ("replace", "pair", "tombert")
IMAGE_DIR = "twitter2015_images"


@ADAPTERS.register("twitter2015")
class Twitter2015Adapter(ImageTextAdapter):
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
        image_dir = _image_folder(root, images)
        if target not in TARGET_MODES:
            raise LayoutError(f"target must be one of {', '.join(TARGET_MODES)}, got {target!r}")
        self.configure(text_model, max_length, image_size, crop)
        self.source_attrs = {"images": str(image_dir)}
        items: list[SourceItem] = []
        issues: list[PrepIssue] = []
        seen: set[str] = set()
        for name, split in SPLIT_FILES.items():
            for result in _read_split(root / name, split, image_dir, target, seen):
                (items if isinstance(result, SourceItem) else issues).append(result)
        return items, issues


def _image_folder(root: Path, images: str | Path | None) -> Path:
    """``images=``, else ``twitter2015_images`` inside the root or beside it (the zip's layout)."""
    candidates = [Path(images)] if images else [root / IMAGE_DIR, root.parent / IMAGE_DIR]
    for folder in candidates:
        if folder.is_dir():
            return folder
    tried = " or ".join(str(c) for c in candidates)
    raise LayoutError(f"{tried}: missing images folder; pass images=FOLDER if it is elsewhere")


def _read_split(
    path: Path, split: str, image_dir: Path, target_mode: str, seen: set[str]
) -> list[SourceItem | PrepIssue]:
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if not lines or lines[0].split("\t")[0].strip() != "index":
        raise LayoutError(f"{path}: line 1 is not TomBERT's header (index, ...); is this the TomBERT file?")
    out: list[SourceItem | PrepIssue] = []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        fields = line.split("\t")
        if len(fields) != len(FIELDS):
            out.append(
                PrepIssue(where, str(path), f"{len(fields)} tab-separated fields, expected {len(FIELDS)}")
            )
            continue
        index, label, image_id, text, target = (f.strip() for f in fields)
        if label not in ("0", "1", "2"):
            out.append(PrepIssue(where, str(path), f"unknown label {label!r} (known: 0, 1, 2); fix the line"))
            continue
        if target_mode == "tombert":
            sentence, pair = text.lower(), target.lower()
        else:
            sentence, pair = text.replace("$T$", target), (target if target_mode == "pair" else None)
        sample_id = f"{path.stem}-{index}"
        out.append(
            image_item(
                where, sample_id, CLASSES[int(label)], split, image_dir / image_id, sentence, seen, pair
            )
        )
    return out
