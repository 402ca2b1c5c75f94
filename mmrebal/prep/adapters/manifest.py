"""Any dataset described by a manifest: CSV (with a header) or JSONL, one row per sample.

Columns: ``id``, ``label``, optional ``split`` (train/val/test; empty lets the runner decide) and one
column per modality. Four names take their kind from the name: ``audio`` (a sound file or a clip
whose audio track is used), ``video`` (frames, cached as modality ``visual``), ``image`` (a still
image) and ``text`` (the text itself, tokenised at prep with a local tokenizer folder, see
:mod:`mmrebal.prep.adapters.text_common`). Any other modality is ``NAME:KIND`` with KIND one of
audio, video, image, text (``rgb:video``, ``depth:video``, ``caption:text``, ``speech:audio``),
cached as modality NAME; so a manifest can hold any number of modalities. A column that is none of
these is an error naming it (``extra=ignore``: a warning, and the column is left out).

Relative paths are resolved against ``--root`` when it is a folder, else against the manifest's
folder. Every row must give every modality column the manifest has (the cache holds all modalities
for every sample); to take audio and frames from the same clip, put its path in both columns.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mmrebal.prep.adapters import ADAPTERS
from mmrebal.prep.adapters.base import (
    Adapter,
    LayoutError,
    PrepIssue,
    SourceItem,
    decode_modalities,
    parse_classes,
    read_table,
    table_item,
)
from mmrebal.prep.adapters.text_common import DEFAULT_MAX_LENGTH, TextTokenizer
from mmrebal.prep.presets import Preset

KINDS = {"audio": "spectrogram", "video": "frames", "image": "image", "text": "tokens"}
# A bare column name -> (modality, column kind); "video" keeps the historic modality name "visual".
BARE_COLUMNS = {"audio": ("audio", "audio"), "video": ("visual", "video"), "image": ("image", "image"),
                "text": ("text", "text")}  # fmt: skip
RESERVED = ("id", "label", "split")
EXTRA_MODES = ("error", "ignore")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def parse_columns(header: list[str], where: str) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Modality columns (column -> (modality, kind)) and the columns that are none of the known forms.

    The cache's modality order: the bare columns as audio, video, image, text, then NAME:KIND columns
    in header order."""
    columns = {column: BARE_COLUMNS[column] for column in BARE_COLUMNS if column in header}
    unknown: list[str] = []
    for column in header:
        if column in RESERVED or column in BARE_COLUMNS:
            continue
        name, sep, kind = column.partition(":")
        if sep and kind in KINDS and _NAME.match(name):
            columns[column] = (name, kind)
        else:
            unknown.append(column)
    modalities = [modality for modality, _ in columns.values()]
    twice = sorted({m for m in modalities if modalities.count(m) > 1})
    if twice:
        raise LayoutError(f"{where}: modality {twice[0]!r} is given by two columns; name each modality once")
    return columns, unknown


@ADAPTERS.register("manifest")
class ManifestAdapter(Adapter):
    default_preset = "ogm"

    def __init__(self) -> None:
        super().__init__()
        self.modalities: dict[str, str] = {}
        self.tokenizer: TextTokenizer | None = None

    def scan(
        self,
        root: Path | None,
        manifest: str | Path | None = None,
        classes: str | list[str] | None = None,
        extra: str = "error",
        text_model: str | Path | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        **options: Any,
    ) -> tuple[list[SourceItem], list[PrepIssue]]:
        if extra not in EXTRA_MODES:
            raise LayoutError(f"extra must be one of {', '.join(EXTRA_MODES)}, got {extra!r}")
        table = _manifest_path(root, manifest)
        base = Path(root) if root is not None and Path(root).is_dir() else table.parent
        header, rows = read_table(table, ("id", "label"))
        columns, unknown = parse_columns(header, str(table))
        forms = "audio, video, image, text or NAME:KIND with KIND audio/video/image/text"
        if unknown and extra == "error":
            raise LayoutError(
                f"{table}: unknown column {', '.join(map(repr, unknown))}; modality columns are {forms} "
                "(--opt extra=ignore leaves unknown columns out)"
            )
        self.notes = [f"{table}: ignoring unknown column {c!r} (extra=ignore)" for c in unknown]
        if not columns:
            raise LayoutError(f"{table}: missing a modality column ({forms}); add one")
        self.modalities = {modality: KINDS[kind] for modality, kind in columns.values()}
        texts = {c: m for c, (m, kind) in columns.items() if kind == "text"}
        paths = {c: m for c, (m, kind) in columns.items() if kind != "text"}
        self.tokenizer = TextTokenizer(text_model, max_length) if texts else None
        self.classes = parse_classes(classes)
        items: list[SourceItem] = []
        issues: list[PrepIssue] = []
        seen: set[str] = set()
        for number, row in rows:
            where = f"{table.name} row {number}"
            empty = [c for c in texts if not row.get(c, "").strip()]
            if empty:
                reason = f"empty text in column {empty[0]!r}; fill it in or drop the row"
                issues.append(PrepIssue(where, str(table), reason))
                continue
            result = table_item(
                where,
                row["id"],
                row["label"],
                row.get("split", ""),
                {m: _resolve(base, row.get(c, "")) for c, m in paths.items()},
                seen,
                self.classes,
            )
            if isinstance(result, SourceItem) and texts:
                result = replace(result, meta={"text": {m: row[c] for c, m in texts.items()}})
            (items if isinstance(result, SourceItem) else issues).append(result)
        return items, issues

    def decode(self, item: SourceItem, preset: Preset) -> dict[str, np.ndarray]:
        arrays = decode_modalities(item.paths, self.modalities, preset)
        for modality, text in item.meta.get("text", {}).items():
            if self.tokenizer is None:
                raise ValueError("the manifest adapter decodes text only after scan")
            arrays.update(self.tokenizer.encode(modality, text))
        return arrays


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
