"""The adapter contract: turn a raw dataset layout into ``SourceItem``s, then decode one item.

``scan`` is cheap (listing and validating, no decoding) and runs once in the main process;
``decode`` runs per item in worker processes and returns fixed-shape arrays for the preset.
A broken layout raises ``LayoutError`` (nothing can be done); a broken row or file becomes a
``PrepIssue`` so the other items still get cached.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmrebal.prep.presets import Preset

SPLIT_ALIASES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "validate": "val",  # Kinetics-700's name
    "dev": "val",
    "test": "test",
}


class LayoutError(ValueError):
    """The dataset root or manifest does not have the expected files or columns (one line, says which)."""


def require_folder(root: Path | str | None, hint: str) -> Path:
    """``root`` as a Path, or a ``LayoutError`` saying what ``--root`` must be."""
    if root is None or not Path(root).is_dir():
        raise LayoutError(f"{root}: not a folder; {hint}")
    return Path(root)


@dataclass(frozen=True)
class SourceItem:
    """One sample before decoding: ``paths`` maps modality name ("audio", "visual", ...) to its file."""

    sample_id: str
    label: str
    split: str | None
    paths: dict[str, Path]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PrepIssue:
    """A row or file that is skipped; ``sample_id`` is the item's id or "row N" of a manifest."""

    sample_id: str
    path: str
    reason: str

    def line(self) -> str:
        return f"{self.sample_id}: {self.path}: {self.reason}"


class Adapter:
    """Base class; subclasses set ``name``, ``modalities``, ``default_preset`` and implement ``scan``."""

    name: ClassVar[str] = ""
    modalities: dict[str, str] = {}  # modality -> cache kind ("spectrogram", "frames", "image")
    default_preset: ClassVar[str] = ""
    classes: tuple[str, ...] | None = None  # a fixed class order, else sorted labels
    # Set by ``scan``: what it found in the source (which release or list file it read, rows it
    # filtered), stored in the cache attributes as ``source_<key>``, and notes the runner prints.
    source_attrs: dict[str, Any]
    notes: list[str]

    def __init__(self) -> None:
        self.source_attrs = {}
        self.notes = []

    def scan(self, root: Path | None, **options: Any) -> tuple[list[SourceItem], list[PrepIssue]]:
        raise NotImplementedError

    def class_names(self, items: list[SourceItem]) -> list[str]:
        """The fixed class order when there is one, else the sorted distinct labels."""
        return list(self.classes) if self.classes else sorted({item.label for item in items})

    def decode(self, item: SourceItem, preset: Preset) -> dict[str, np.ndarray]:
        """``{"<modality>/<array>": array}`` for every modality of the item, in the preset's shapes."""
        kinds = {m: self.modalities.get(m) or KIND_OF_MODALITY[m] for m in item.paths}
        return decode_modalities(item.paths, kinds, preset)


KIND_OF_MODALITY = {"audio": "spectrogram", "visual": "frames", "image": "image"}


def decode_modalities(paths: dict[str, Path], kinds: dict[str, str], preset: Preset) -> dict[str, np.ndarray]:
    """Every modality's cache arrays, in ``paths`` order; a clip that is both a modality's spectrogram
    and another's frames is read in one pass (``read_clip``), not twice."""
    out: dict[str, np.ndarray] = {}
    pending = dict(paths)
    sounds = [m for m in paths if kinds[m] == "spectrogram"] if preset.audio and preset.frames else []
    for audio in sounds:
        visual = next((m for m in pending if kinds[m] == "frames" and pending[m] == paths[audio]), None)
        if visual is not None:
            out.update(_decode_clip(audio, visual, paths[audio], preset))
            del pending[audio], pending[visual]
    out.update(decode_modality(modality, kinds[modality], path, preset) for modality, path in pending.items())
    order = {modality: n for n, modality in enumerate(paths)}
    return dict(sorted(out.items(), key=lambda pair: order[pair[0].split("/")[0]]))


def _decode_clip(audio: str, visual: str, path: Path, preset: Preset) -> dict[str, np.ndarray]:
    from mmrebal.media.clip import read_clip
    from mmrebal.media.features import audio_features

    sound, frames = preset.audio, preset.frames
    wave, pictures = read_clip(
        path, sound.sample_rate, frames.num_frames, frames.size, frames.fps, sound.min_duration_s
    )
    return {f"{audio}/spec": audio_features(wave, sound), f"{visual}/frames": pictures}


def decode_modality(modality: str, kind: str, path: Path, preset: Preset) -> tuple[str, np.ndarray]:
    """Decode one modality's file into its cache array name and array."""
    if kind == "spectrogram":
        if preset.audio is None:
            raise ValueError(f"preset {preset.name!r} has no audio settings")
        from mmrebal.media.audio import read_audio
        from mmrebal.media.features import audio_features

        wave = read_audio(path, preset.audio.sample_rate, preset.audio.min_duration_s)
        return f"{modality}/spec", audio_features(wave, preset.audio)
    if preset.frames is None:
        raise ValueError(f"preset {preset.name!r} has no frame settings")
    if kind == "frames":
        from mmrebal.media.video import read_frames

        frames = preset.frames
        return f"{modality}/frames", read_frames(path, frames.num_frames, frames.size, frames.fps)
    if kind == "image":
        from mmrebal.media.image import read_image

        return f"{modality}/pixels", read_image(path, preset.frames.size)
    raise ValueError(f"no decoder for modality kind {kind!r}")


def read_table(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (row number, row) of a CSV (header line) or JSONL file; row numbers are 1-based data rows.

    Raises ``LayoutError`` naming the first missing required column.
    """
    path = Path(path)
    if not path.is_file():
        raise LayoutError(f"{path}: no such file; pass the manifest/labels file")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise LayoutError(
                            f"{path}: line {n} is not JSON ({err.msg}); fix or remove it"
                        ) from None
                    rows.append((n, {k: "" if v is None else str(v) for k, v in record.items()}))
        header = list(dict.fromkeys(k for _, row in rows for k in row))
    else:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            rows = [
                (n, {k.strip(): (v or "").strip() for k, v in row.items() if k is not None})
                for n, row in enumerate(reader, 1)
            ]
    missing = [c for c in required if c not in header]
    if missing:
        have = ", ".join(header) or "no columns"
        raise LayoutError(f"{path}: missing column {missing[0]!r} (found: {have}); add it to the header")
    return header, rows


def parse_classes(value: str | Path | list[str] | tuple[str, ...] | None) -> tuple[str, ...] | None:
    """A class list option: a list, a comma-separated string, or a text file with one class per line."""
    if value is None or isinstance(value, list | tuple):
        return tuple(value) if value else None
    if Path(value).is_file():
        names = [line.strip() for line in Path(value).read_text(encoding="utf-8").splitlines()]
    else:
        names = [part.strip() for part in str(value).split(",")]
    return tuple(name for name in names if name) or None


def table_item(
    row: str,
    sample_id: str,
    label: str,
    split: str,
    paths: dict[str, Path],
    seen: set[str],
    classes: tuple[str, ...] | None,
) -> SourceItem | PrepIssue:
    """Validate one labels-table/manifest row: id, label, split and that every file exists."""
    first = str(next(iter(paths.values()), ""))
    if not sample_id:
        return PrepIssue(row, first, "empty id; fill in the id column")
    if sample_id in seen:
        return PrepIssue(row, first, f"duplicate id {sample_id!r}; ids must be unique")
    if not label:
        return PrepIssue(row, first, "empty label; fill in the label column")
    if classes is not None and label not in classes:
        return PrepIssue(row, first, f"unknown label {label!r} (known: {', '.join(classes)}); fix the row")
    try:
        split_name = normalize_split(split)
    except KeyError:
        return PrepIssue(row, first, f"unknown split {split!r}; use train, val, test or leave it empty")
    for modality, path in paths.items():
        if not str(path) or not path.is_file():
            return PrepIssue(row, str(path), f"missing {modality} file; fix the path or drop the row")
    seen.add(sample_id)
    return SourceItem(sample_id, label, split_name, paths)


def normalize_split(value: str) -> str | None:
    """ "" -> None (the runner decides); train/val/test and common aliases; anything else -> KeyError."""
    value = value.strip().lower()
    return SPLIT_ALIASES[value] if value else None


__all__ = [
    "SPLIT_ALIASES",
    "Adapter",
    "KIND_OF_MODALITY",
    "LayoutError",
    "PrepIssue",
    "SourceItem",
    "decode_modalities",
    "decode_modality",
    "normalize_split",
    "parse_classes",
    "table_item",
    "read_table",
]
