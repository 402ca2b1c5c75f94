"""Any dataset described by a manifest: CSV (with a header) or JSONL, one row per sample.

Columns: ``id``, ``label``, optional ``split`` (train/val/test; empty lets the runner decide) and one
path column per modality: ``audio`` (a sound file or a clip whose audio track is used), ``video``
(frames, cached as modality ``visual``), ``image`` (a still image). Relative paths are resolved
against ``--root`` when it is a folder, else against the manifest's folder. Every row must give every
modality column the manifest has (the cache holds all modalities for every sample); to take audio
and frames from the same clip, put its path in both ``audio`` and ``video``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmrebal.prep.adapters import ADAPTERS
from mmrebal.prep.adapters.base import (
    KIND_OF_MODALITY,
    Adapter,
    LayoutError,
    PrepIssue,
    SourceItem,
    parse_classes,
    read_table,
    table_item,
)

ROLE_COLUMNS = {"audio": "audio", "video": "visual", "image": "image"}


@ADAPTERS.register("manifest")
class ManifestAdapter(Adapter):
    name = "manifest"
    default_preset = "ogm"

    def __init__(self) -> None:
        self.modalities: dict[str, str] = {}

    def scan(
        self,
        root: Path | None,
        manifest: str | Path | None = None,
        classes: str | list[str] | None = None,
        **options: Any,
    ) -> tuple[list[SourceItem], list[PrepIssue]]:
        table = _manifest_path(root, manifest)
        base = Path(root) if root is not None and Path(root).is_dir() else table.parent
        header, rows = read_table(table, ("id", "label"))
        columns = [c for c in ROLE_COLUMNS if c in header]
        if not columns:
            raise LayoutError(f"{table}: missing a modality column (one of audio, video, image); add one")
        self.modalities = {ROLE_COLUMNS[c]: KIND_OF_MODALITY[ROLE_COLUMNS[c]] for c in columns}
        self.classes = parse_classes(classes)
        items: list[SourceItem] = []
        issues: list[PrepIssue] = []
        seen: set[str] = set()
        for number, row in rows:
            paths = {ROLE_COLUMNS[c]: _resolve(base, row.get(c, "")) for c in columns}
            result = table_item(
                f"{table.name} row {number}",
                row["id"],
                row["label"],
                row.get("split", ""),
                paths,
                seen,
                self.classes,
            )
            (items if isinstance(result, SourceItem) else issues).append(result)
        return items, issues


def _manifest_path(root: Path | None, manifest: str | Path | None) -> Path:
    if manifest is not None:
        return Path(manifest)
    if root is not None and Path(root).is_file():
        return Path(root)
    if root is not None:
        for name in ("manifest.csv", "manifest.jsonl"):
            if (Path(root) / name).is_file():
                return Path(root) / name
    raise LayoutError(f"{root}: no manifest; pass --root MANIFEST.csv|.jsonl or manifest=PATH")


def _resolve(base: Path, value: str) -> Path:
    if not value:
        return Path("")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path
