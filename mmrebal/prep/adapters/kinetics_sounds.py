"""Kinetics-Sounds: the 31 sound-bearing Kinetics classes, from Kinetics annotations or OGM-GE's lists.

There is no single Kinetics-Sounds release: the clips are Kinetics clips (``<youtube_id>_<start:06d>_
<end:06d>.mp4``, audio and video in one file, searched recursively under ``--root``) and the subset is
named by one of two conventions (``convention=auto`` picks ``ogm`` when ``my_train.txt`` is there):

- ``kinetics``: the Kinetics annotation CSVs (header ``label,youtube_id,time_start,time_end,split``
  [``,is_cc``]; Kinetics-700 calls its validation split ``validate``), from ``annotations=`` (a CSV
  or a folder of them; default ``<root>/annotations/`` or the root). A row's clip is
  ``<youtube_id>_<time_start:06d>_<time_end:06d>`` or, when the CSV has no times (the BSS repo's
  ``annotations/{train,test}.csv``) or no such clip exists, ``<youtube_id>``. The split is the row's
  ``split`` column, else the CSV's name (``train.csv``, ``test.csv``, ...). Rows of other classes are
  skipped and counted (``source_rows_outside_classes``), not reported one by one. Kinetics-400 ships
  no labels for its test split, so its labelled validation clips are the Kinetics-Sounds test set
  (``validation_as=test``, the default; ``val`` keeps them as val).
- ``ogm``: OGM-GE's ``my_train.txt`` and ``my_test.txt`` (from ``lists=``, default the root): CRLF,
  no header, rows ``<clip id>,10,<label index>``; the index points into the class list.

``classes`` (a list, comma-separated, or a file with one name per line) replaces the shipped 31
Kinetics-400 names (``KS31``, sorted, which is the order OGM-GE's loader indexes: it sorts its class
list). The convention and the files read are in the cache attributes.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from mmrebal.prep.adapters import ADAPTERS
from mmrebal.prep.adapters.base import (
    SPLIT_ALIASES,
    Adapter,
    LayoutError,
    PrepIssue,
    SourceItem,
    parse_classes,
    read_table,
    require_folder,
    table_item,
)

KS31 = (
    "blowing nose",
    "blowing out candles",
    "bowling",
    "chopping wood",
    "dribbling basketball",
    "laughing",
    "mowing lawn",
    "playing accordion",
    "playing bagpipes",
    "playing bass guitar",
    "playing clarinet",
    "playing drums",
    "playing guitar",
    "playing harmonica",
    "playing keyboard",
    "playing organ",
    "playing piano",
    "playing saxophone",
    "playing trombone",
    "playing trumpet",
    "playing violin",
    "playing xylophone",
    "ripping paper",
    "shoveling snow",
    "shuffling cards",
    "singing",
    "stomping grapes",
    "tap dancing",
    "tapping guitar",
    "tapping pen",
    "tickling",
)
OGM_LISTS = {"my_train.txt": "train", "my_test.txt": "test"}
CONVENTIONS = ("auto", "kinetics", "ogm")


@ADAPTERS.register("kinetics-sounds")
class KineticsSoundsAdapter(Adapter):
    modalities = {"audio": "spectrogram", "visual": "frames"}
    default_preset = "bss-ks"

    def scan(
        self,
        root: Path | None,
        convention: str = "auto",
        annotations: str | Path | None = None,
        lists: str | Path | None = None,
        validation_as: str = "test",
        classes: str | list[str] | None = None,
        **options: Any,
    ) -> tuple[list[SourceItem], list[PrepIssue]]:
        root = require_folder(root, "--root must be the folder of Kinetics-Sounds mp4 clips")
        if convention not in CONVENTIONS:
            raise LayoutError(f"convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}")
        if validation_as not in ("test", "val"):
            raise LayoutError(f"validation_as must be test or val, got {validation_as!r}")
        self.classes = known = parse_classes(classes) or KS31
        list_dir = Path(lists) if lists else root
        if convention == "auto":
            convention = "ogm" if (list_dir / "my_train.txt").is_file() else "kinetics"
        clips = {path.stem: path for path in sorted(root.rglob("*.mp4"))}
        if convention == "ogm":
            items, issues = self._ogm(list_dir, clips, known)
        else:
            tables = _annotation_files(root, annotations)
            items, issues = self._kinetics(tables, clips, known, validation_as)
        self.source_attrs["convention"] = convention
        return items, issues

    def _ogm(
        self, folder: Path, clips: dict[str, Path], known: tuple[str, ...]
    ) -> tuple[list[SourceItem], list[PrepIssue]]:
        items: list[SourceItem] = []
        issues: list[PrepIssue] = []
        seen: set[str] = set()
        for name, split in OGM_LISTS.items():
            path = folder / name
            if not path.is_file():
                raise LayoutError(f"{path}: missing OGM-GE list; pass lists=FOLDER with my_train/my_test.txt")
            for number, row in enumerate(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()), 1):
                if not row:
                    continue
                where = f"{name} line {number}"
                if len(row) != 3 or not row[2].strip().isdigit() or int(row[2]) >= len(known):
                    reason = f"expected <clip id>,10,<label index 0..{len(known) - 1}>; fix the line"
                    issues.append(PrepIssue(where, str(path), reason))
                    continue
                result = _clip_item(where, [row[0].strip()], known[int(row[2])], split, clips, seen)
                (items if isinstance(result, SourceItem) else issues).append(result)
        self.source_attrs["lists"] = [str(folder / name) for name in OGM_LISTS]
        return items, issues

    def _kinetics(
        self, tables: list[Path], clips: dict[str, Path], known: tuple[str, ...], validation_as: str
    ) -> tuple[list[SourceItem], list[PrepIssue]]:
        items: list[SourceItem] = []
        issues: list[PrepIssue] = []
        seen: set[str] = set()
        outside = 0
        for table in tables:
            header, rows = read_table(table, ("label", "youtube_id"))
            timed = {"time_start", "time_end"} <= set(header)
            for number, row in rows:
                if row["label"] not in known:
                    outside += 1
                    continue
                where = f"{table.name} row {number}"
                try:
                    names = _clip_names(row, timed)
                except ValueError:
                    issues.append(PrepIssue(where, str(table), "time_start/time_end are not numbers"))
                    continue
                stem = table.stem.lower()
                split = row.get("split") or (stem if stem in SPLIT_ALIASES else "")
                if validation_as == "test" and SPLIT_ALIASES.get(split.strip().lower()) == "val":
                    split = "test"
                result = _clip_item(where, names, row["label"], split, clips, seen)
                (items if isinstance(result, SourceItem) else issues).append(result)
        self.source_attrs.update(annotations=[str(t) for t in tables], rows_outside_classes=outside)
        return items, issues


def _clip_item(
    where: str, names: list[str], label: str, split: str, clips: dict[str, Path], seen: set[str]
) -> SourceItem | PrepIssue:
    """The row's clip (the first of ``names`` found under the root) as an item, or why it is skipped."""
    clip = next((clips[name] for name in names if name in clips), None)
    if clip is None:
        wanted = " or ".join(f"{name}.mp4" for name in names)
        return PrepIssue(where, wanted, "no such clip under --root; download it or drop the row")
    return table_item(where, clip.stem, label, split, {"audio": clip, "visual": clip}, seen, None)


def _clip_names(row: dict[str, str], timed: bool) -> list[str]:
    """Candidate clip stems: ``<ytid>_<start:06d>_<end:06d>`` (when the CSV has times), then ``<ytid>``."""
    youtube_id = row["youtube_id"]
    if not timed:
        return [youtube_id]
    start, end = int(float(row["time_start"])), int(float(row["time_end"]))
    return [f"{youtube_id}_{start:06d}_{end:06d}", youtube_id]


def _annotation_files(root: Path, annotations: str | Path | None) -> list[Path]:
    if annotations is not None:
        given = Path(annotations)
        if given.is_file():
            return [given]
        if not given.is_dir():
            raise LayoutError(f"{given}: no such annotation CSV or folder; fix annotations=")
        folder = given
    else:
        folder = root / "annotations" if (root / "annotations").is_dir() else root
    found = sorted(folder.glob("*.csv"))
    if not found:
        raise LayoutError(
            f"{folder}: no my_train.txt and no .csv annotations; pass annotations=CSV|FOLDER or lists=FOLDER"
        )
    return found
