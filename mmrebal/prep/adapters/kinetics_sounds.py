"""Kinetics-Sounds: a folder of mp4 clips (searched recursively) + a CSV ``clip_id,label[,split]``.

Audio and frames both come from the clip. The CSV is the ``csv`` option, or the only ``.csv`` in
the root. Classes are the ``classes`` option (list, comma-separated, or a file) or the sorted labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmrebal.prep.adapters import ADAPTERS
from mmrebal.prep.adapters.base import (
    Adapter,
    LayoutError,
    PrepIssue,
    SourceItem,
    parse_classes,
    read_table,
    require_folder,
    table_item,
)


@ADAPTERS.register("kinetics-sounds")
class KineticsSoundsAdapter(Adapter):
    name = "kinetics-sounds"
    modalities = {"audio": "spectrogram", "visual": "frames"}
    default_preset = "bss-ks"

    def scan(
        self,
        root: Path | None,
        csv: str | Path | None = None,
        classes: str | list[str] | None = None,
        **options: Any,
    ) -> tuple[list[SourceItem], list[PrepIssue]]:
        root = require_folder(root, "--root must be the folder of Kinetics-Sounds mp4 clips")
        table = Path(csv) if csv else _only_csv(root)
        header, rows = read_table(table, ("clip_id", "label"))
        self.classes = parse_classes(classes)
        clips = {path.stem: path for path in sorted(root.rglob("*.mp4"))}
        items: list[SourceItem] = []
        issues: list[PrepIssue] = []
        seen: set[str] = set()
        for number, row in rows:
            clip_id = Path(row["clip_id"]).stem if row["clip_id"].endswith(".mp4") else row["clip_id"]
            path = clips.get(clip_id, root / f"{clip_id}.mp4")
            result = table_item(
                f"{table.name} row {number}",
                clip_id,
                row["label"],
                row.get("split", ""),
                {"audio": path, "visual": path},
                seen,
                self.classes,
            )
            (items if isinstance(result, SourceItem) else issues).append(result)
        return items, issues


def _only_csv(root: Path) -> Path:
    found = sorted(root.glob("*.csv"))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise LayoutError(f"{root}: {what} .csv files; pass csv=PATH to the clip_id,label[,split] table")
    return found[0]
