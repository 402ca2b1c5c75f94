"""CREMA-D in its own layout: ``AudioWAV/<name>.wav`` + ``VideoFlash/<name>.flv``.

The label is the emotion code in the file name (``1001_DFA_ANG_XX`` -> ANG). Split: OGM-GE's
``train.csv``/``test.csv`` (rows ``name,label``) when given as options or found in the root;
otherwise a seeded split stratified by emotion with OGM-GE's proportion (744 of 7,442 clips to
test, i.e. 6,698/744 on the full set). Validation is carved from train by the prep runner.

The GitHub release keeps its media in Git LFS: a clone without ``git lfs pull`` holds ~130-byte text
pointers instead of wav/flv files, which scan detects and reports once, before anything is decoded.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from mmrebal.prep.adapters import ADAPTERS
from mmrebal.prep.adapters.base import Adapter, LayoutError, PrepIssue, SourceItem
from mmrebal.prep.splits import stratified_carve

CLASSES = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
OGM_TEST_FRACTION = 744 / 7442
_NAME = re.compile(r"^\d{4}_[A-Z]{3}_([A-Z]{3})_[A-Z]{2}$")
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"
LFS_POINTER_MAX_BYTES = 1024  # pointers are ~130 bytes; no real clip is this small


@ADAPTERS.register("cremad")
class CremadAdapter(Adapter):
    modalities = {"audio": "spectrogram", "visual": "frames"}
    default_preset = "ogm"
    classes = CLASSES

    def __init__(self) -> None:
        super().__init__()
        self.split_method = ""

    def scan(
        self,
        root: Path | None,
        train_csv: str | Path | None = None,
        test_csv: str | Path | None = None,
        seed: int = 0,
        **options: Any,
    ) -> tuple[list[SourceItem], list[PrepIssue]]:
        if root is None:
            raise LayoutError("cremad needs --root: the CREMA-D folder holding AudioWAV/ and VideoFlash/")
        root = Path(root)
        for folder in ("AudioWAV", "VideoFlash"):
            if not (root / folder).is_dir():
                raise LayoutError(f"{root / folder}: missing folder; --root must be the CREMA-D folder")
        wavs = sorted((root / "AudioWAV").glob("*.wav"))
        if not wavs:
            raise LayoutError(f"{root / 'AudioWAV'}: no .wav files; is this the CREMA-D folder?")
        media = wavs + sorted((root / "VideoFlash").glob("*.flv"))
        pointers = sum(_is_lfs_pointer(path) for path in media)
        if pointers:
            raise LayoutError(
                f"{root}: {pointers} of {len(media)} files in AudioWAV/ and VideoFlash/ are Git LFS pointers "
                "(text stubs), not media; run `git lfs pull` in the CREMA-D clone"
            )
        items: list[SourceItem] = []
        issues: list[PrepIssue] = []
        for wav in wavs:
            match = _NAME.match(wav.stem)
            video = root / "VideoFlash" / f"{wav.stem}.flv"
            if match is None or match.group(1) not in CLASSES:
                issues.append(
                    PrepIssue(wav.stem, str(wav), "name is not CREMA-D's ACTOR_SENTENCE_EMOTION_LEVEL")
                )
            elif not video.is_file():
                issues.append(
                    PrepIssue(wav.stem, str(video), "no matching video; restore the .flv or drop the wav")
                )
            else:
                items.append(SourceItem(wav.stem, match.group(1), None, {"audio": wav, "visual": video}))
        train_csv = train_csv or _existing(root / "train.csv")
        test_csv = test_csv or _existing(root / "test.csv")
        if train_csv and test_csv:
            return self._csv_split(items, Path(train_csv), Path(test_csv), issues)
        return self._seeded_split(items, int(seed)), issues

    def _csv_split(
        self, items: list[SourceItem], train_csv: Path, test_csv: Path, issues: list[PrepIssue]
    ) -> tuple[list[SourceItem], list[PrepIssue]]:
        split_of = {name: "train" for name in _csv_names(train_csv)}
        split_of.update({name: "test" for name in _csv_names(test_csv)})
        self.split_method = f"OGM-GE lists {train_csv.name}/{test_csv.name}"
        kept = []
        for item in items:
            if item.sample_id in split_of:
                kept.append(_with_split(item, split_of[item.sample_id]))
            else:
                issues.append(
                    PrepIssue(item.sample_id, str(item.paths["audio"]), "not listed in train/test csv")
                )
        return kept, issues

    def _seeded_split(self, items: list[SourceItem], seed: int) -> list[SourceItem]:
        labels = [CLASSES.index(item.label) for item in items]
        test = stratified_carve([item.sample_id for item in items], labels, OGM_TEST_FRACTION, seed)
        self.split_method = f"seeded stratified split, 744/7442 of each class to test, seed {seed}"
        return [_with_split(item, "test" if item.sample_id in test else "train") for item in items]


def _is_lfs_pointer(path: Path) -> bool:
    """A Git LFS pointer file: tiny, and its first line names the LFS spec."""
    if path.stat().st_size > LFS_POINTER_MAX_BYTES:
        return False
    with open(path, "rb") as fh:
        return fh.read(len(LFS_POINTER)) == LFS_POINTER


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _csv_names(path: Path) -> list[str]:
    """First column of OGM-GE's split lists (no header; a ``name`` header is tolerated)."""
    if not path.is_file():
        raise LayoutError(f"{path}: no such split list; pass OGM-GE's train.csv and test.csv")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        names = [row[0].strip() for row in csv.reader(fh) if row and row[0].strip()]
    return [n for n in names if n.lower() != "name"]


def _with_split(item: SourceItem, split: str) -> SourceItem:
    return SourceItem(item.sample_id, item.label, split, item.paths, item.meta)
