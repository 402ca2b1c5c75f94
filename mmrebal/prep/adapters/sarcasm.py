"""Multimodal sarcasm detection: MMSD (Cai et al., 2019) and MMSD2.0, each read as released.

``--root`` holds one or more text folders and the images ``dataset_image/<image_id>.jpg``
(``images=`` names another folder). ``release`` picks the text (``auto``: the first found of this order):

- ``mmsd2``: MMSD2.0's ``text_json_final/{train,valid,test}.json``;
- ``mmsd-clean``: original MMSD as the MMSD2.0 repo packages it, ``text_json_clean/`` (same names);
- ``mmsd``: the original release ``text/train.txt``, ``valid2.txt``, ``test2.txt``.

The JSON files are arrays of ``{"image_id": <int>, "text": ..., "label": 0|1}`` (other keys ignored).
The MMSD text files are CRLF, one Python-literal list per line: train ``[id, text, label]``, valid/test
``[id, text, hashtag_label, human_label]``; the label is the LAST field, as Cai et al.'s loader reads it
(the hashtag label is kept in the item's meta). ``keyword_filter`` (MMSD only, default on) drops the
posts whose whitespace tokens include one of Cai et al.'s eleven keywords, as their code does: 29,040
train lines -> 19,816 (valid/test lose none); the release has no image for a dropped post. The
release read and the rows filtered are in the cache attributes (``source_release``,
``source_keyword_filtered``). ``valid`` is the val split; labels 0/1 are non-sarcastic/sarcastic; sample
ids are the image ids. Text and image handling: :mod:`mmrebal.prep.adapters.text_common`.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from mmrebal.prep.adapters import ADAPTERS
from mmrebal.prep.adapters.base import LayoutError, PrepIssue, SourceItem, require_folder
from mmrebal.prep.adapters.text_common import DEFAULT_MAX_LENGTH, ImageTextAdapter, image_item

IMAGE_DIR = "dataset_image"
JSON_SPLITS = {"train.json": "train", "valid.json": "val", "test.json": "test"}
RELEASES: dict[str, tuple[str, dict[str, str]]] = {  # auto tries them in this order
    "mmsd2": ("text_json_final", JSON_SPLITS),
    "mmsd-clean": ("text_json_clean", JSON_SPLITS),
    "mmsd": ("text", {"train.txt": "train", "valid2.txt": "val", "test2.txt": "test"}),
}
KEYWORDS = frozenset(  # Cai et al.'s filter: a post with one of these whitespace tokens is dropped
    {
        "exgag",
        "sarcasm",
        "sarcastic",
        "reposting",
        "<url>",
        "joke",
        "humour",
        "humor",
        "jokes",
        "irony",
        "ironic",
    }
)
CLASSES = ("non-sarcastic", "sarcastic")


@ADAPTERS.register("sarcasm")
class SarcasmAdapter(ImageTextAdapter):
    classes = CLASSES

    def scan(
        self,
        root: Path | None,
        release: str = "auto",
        images: str | Path | None = None,
        keyword_filter: bool = True,
        text_model: str | Path | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        image_size: int | None = None,
        crop: str = "resize",
        **options: Any,
    ) -> tuple[list[SourceItem], list[PrepIssue]]:
        root = require_folder(root, f"--root must hold a text folder and {IMAGE_DIR}/")
        chosen = _release(root, release)
        folder, split_files = RELEASES[chosen]
        for name in split_files:
            if not (root / folder / name).is_file():
                raise LayoutError(f"{root / folder / name}: missing split file of the {chosen} release")
        image_dir = Path(images) if images else root / IMAGE_DIR
        if not image_dir.is_dir():
            raise LayoutError(f"{image_dir}: missing images folder; pass images=FOLDER if it is elsewhere")
        self.configure(text_model, max_length, image_size, crop)
        items: list[SourceItem] = []
        issues: list[PrepIssue] = []
        seen: set[str] = set()
        filtered = dict.fromkeys(split_files.values(), 0)
        for name, split in split_files.items():
            path = root / folder / name
            records = _json_records(path) if chosen != "mmsd" else _literal_records(path)
            for where, record in records:
                if isinstance(record, PrepIssue):
                    issues.append(record)
                    continue
                image_id, text, label, extra = record
                if chosen == "mmsd" and keyword_filter and KEYWORDS & set(text.split()):
                    filtered[split] += 1
                    continue
                result = _item(where, path, image_id, text, label, split, image_dir, seen)
                if isinstance(result, SourceItem) and extra is not None:
                    result.meta["hashtag_label"] = extra
                (items if isinstance(result, SourceItem) else issues).append(result)
        self.source_attrs = {"release": chosen, "text_folder": folder}
        if chosen == "mmsd":
            self.source_attrs["keyword_filtered"] = filtered if keyword_filter else "off"
        return items, issues


def _release(root: Path, release: str) -> str:
    if release != "auto":
        if release not in RELEASES:
            raise LayoutError(f"release must be auto or one of {', '.join(RELEASES)}, got {release!r}")
        if not (root / RELEASES[release][0]).is_dir():
            raise LayoutError(f"{root / RELEASES[release][0]}: missing folder of the {release} release")
        return release
    for name, (folder, _) in RELEASES.items():
        if (root / folder).is_dir():
            return name
    folders = ", ".join(f"{folder}/" for folder, _ in RELEASES.values())
    raise LayoutError(f"{root}: none of {folders}; --root must be the MMSD or MMSD2.0 data folder")


def _json_records(path: Path) -> list[tuple[str, tuple | PrepIssue]]:
    """(where, (image_id, text, label, None)) per element of an MMSD2.0 JSON array."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise LayoutError(f"{path}: not JSON ({err.msg}, line {err.lineno}); re-download it") from None
    if not isinstance(data, list):
        raise LayoutError(f"{path}: expected a JSON array of {{image_id, text, label}} records")
    out: list[tuple[str, tuple | PrepIssue]] = []
    for number, record in enumerate(data, 1):
        where = f"{path.name} record {number}"
        if not isinstance(record, dict) or not {"image_id", "text", "label"} <= set(record):
            out.append((where, PrepIssue(where, str(path), "expected keys image_id, text, label")))
        else:
            out.append((where, (record["image_id"], record["text"], record["label"], None)))
    return out


def _literal_records(path: Path) -> list[tuple[str, tuple | PrepIssue]]:
    """(where, (image_id, text, label, hashtag label or None)) per line of an MMSD text file."""
    out: list[tuple[str, tuple | PrepIssue]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            record = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError):
            record = None
        if not isinstance(record, list | tuple) or len(record) not in (3, 4):
            reason = "expected a Python-literal list [id, text, label] or [id, text, hashtag, label]"
            out.append((where, PrepIssue(where, str(path), reason)))
        else:
            out.append((where, (record[0], record[1], record[-1], record[2] if len(record) == 4 else None)))
    return out


def _item(
    where: str, path: Path, image_id: Any, text: Any, label: Any, split: str, image_dir: Path, seen: set[str]
) -> SourceItem | PrepIssue:
    if str(label).strip() not in ("0", "1"):
        return PrepIssue(where, str(path), f"unknown label {label!r} (known: 0, 1); fix the record")
    sample_id = str(image_id).strip()
    return image_item(
        where, sample_id, CLASSES[int(label)], split, image_dir / f"{sample_id}.jpg", str(text), seen
    )
