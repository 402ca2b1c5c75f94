"""AVE (Audio-Visual Event localisation) as 28-class clip classification, from its release layout.

``--root`` holds ``Annotations.txt`` (every clip), the split lists ``trainSet.txt``, ``valSet.txt`` and
``testSet.txt`` (the same format) and the folder ``AVE/`` of ``<VideoID>.mp4`` clips with audio
(``videos=`` names another folder). Lines are ``Category&VideoID&Quality&StartTime&EndTime``; a header
line with those words is skipped. The classes are the sorted categories of ``Annotations.txt`` (28 in
the release), so every split indexes them alike. Audio and frames both come from the whole 10 s clip
(the event window, StartTime-EndTime in seconds, is kept in the item's meta, not cut). Sample ids are
the VideoIDs.

A VideoID may be listed more than once with different categories (45 such IDs in ``Annotations.txt``).
``duplicates`` says which line of such an ID, over the split lists read in train, val, test order, is
kept: ``last`` (default; OGM-GE's loader replaces an earlier line with a later one), ``first`` or
``drop`` (none). Every other line of the ID is reported as skipped, naming the one kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmrebal.prep.adapters import ADAPTERS
from mmrebal.prep.adapters.base import Adapter, LayoutError, PrepIssue, SourceItem, require_folder

ANNOTATIONS = "Annotations.txt"
SPLIT_FILES = {"trainSet.txt": "train", "valSet.txt": "val", "testSet.txt": "test"}
FIELDS = ("Category", "VideoID", "Quality", "StartTime", "EndTime")
DUPLICATES = ("last", "first", "drop")


@ADAPTERS.register("ave")
class AveAdapter(Adapter):
    modalities = {"audio": "spectrogram", "visual": "frames"}
    default_preset = "ave"

    def scan(
        self,
        root: Path | None,
        videos: str | Path | None = None,
        duplicates: str = "last",
        **options: Any,
    ) -> tuple[list[SourceItem], list[PrepIssue]]:
        root = require_folder(root, f"--root must hold {ANNOTATIONS} and the split lists")
        if duplicates not in DUPLICATES:
            raise LayoutError(f"duplicates must be one of {', '.join(DUPLICATES)}, got {duplicates!r}")
        for name in (ANNOTATIONS, *SPLIT_FILES):
            if not (root / name).is_file():
                raise LayoutError(f"{root / name}: missing file; --root must be the AVE release folder")
        clip_dir = Path(videos) if videos else root / "AVE"
        if not clip_dir.is_dir():
            raise LayoutError(f"{clip_dir}: missing folder of <VideoID>.mp4 clips; pass videos=FOLDER")
        issues: list[PrepIssue] = []
        categories = {row[0] for _, row in _rows(root / ANNOTATIONS, issues)}
        if not categories:
            raise LayoutError(f"{root / ANNOTATIONS}: no annotation lines; is this the AVE release?")
        self.classes = tuple(sorted(categories))
        rows = [
            (where, split, fields)
            for name, split in SPLIT_FILES.items()
            for where, fields in _rows(root / name, issues)
        ]
        lines_of: dict[str, list[int]] = {}
        for k, (_, _, fields) in enumerate(rows):
            lines_of.setdefault(fields[1], []).append(k)
        items: list[SourceItem] = []
        for k, (where, split, (category, video_id, quality, start, end)) in enumerate(rows):
            clip = clip_dir / f"{video_id}.mp4"
            same = lines_of[video_id]
            kept = {"last": same[-1], "first": same[0], "drop": None}[duplicates]
            if len(same) > 1 and k != kept:
                keeps = f"keeps {rows[kept][0]}" if kept is not None else "drops every line of it"
                reason = f"VideoID {video_id!r} is listed {len(same)} times; duplicates={duplicates} {keeps}"
                issues.append(PrepIssue(where, str(clip), reason))
            elif category not in categories:
                issues.append(
                    PrepIssue(where, str(clip), f"unknown category {category!r}; not in {ANNOTATIONS}")
                )
            elif not clip.is_file():
                issues.append(PrepIssue(where, str(clip), "missing clip; restore it or drop the line"))
            else:
                meta = {"quality": quality, "start_s": start, "end_s": end}
                items.append(SourceItem(video_id, category, split, {"audio": clip, "visual": clip}, meta))
        self.source_attrs["duplicated_ids"] = sum(len(lines) > 1 for lines in lines_of.values())
        return items, issues


def _rows(path: Path, issues: list[PrepIssue]) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(where, fields) of each well-formed line; a malformed one becomes an issue naming its line."""
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        fields = tuple(part.strip() for part in line.split("&"))
        if not line.strip() or fields == FIELDS:
            continue
        where = f"{path.name} line {number}"
        if len(fields) != len(FIELDS) or not all(fields[:2]):
            issues.append(PrepIssue(where, str(path), f"expected {'&'.join(FIELDS)}; fix the line"))
        else:
            yield where, fields
