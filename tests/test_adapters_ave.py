"""The ave adapter on a tiny copy of the AVE release layout (real mp4 clips with AAC audio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _adapter_train import train_briefly
from typer.testing import CliRunner

from mmrebal.cache.format import read_info
from mmrebal.cli import app
from mmrebal.media.video import write_clip
from mmrebal.prep.adapters import ADAPTERS, LayoutError
from mmrebal.prep.presets import PRESETS

torch.set_num_threads(1)
HEADER = "Category&VideoID&Quality&StartTime&EndTime"
CATEGORIES = ("Church bell", "Male speech, man speaking", "Bark")
SPLITS = {"trainSet.txt": 6, "valSet.txt": 2, "testSet.txt": 2}


def clip(path: Path, seed: int, seconds: float = 1.0, rate: int = 16000) -> None:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    tone = 0.3 * np.sin(2 * np.pi * (200 + 100 * seed) * np.arange(round(seconds * rate)) / rate)
    write_clip(path, frames, fps=4, audio=tone.astype(np.float32), sample_rate=rate)


def ave_layout(root: Path) -> list[str]:
    """The AVE release: ``Annotations.txt`` (LF, no header, as in the AVE-ECCV18 repo), the split lists
    ``trainSet.txt``/``valSet.txt``/``testSet.txt`` (same lines after a header) and ``AVE/<VideoID>.mp4``."""
    (root / "AVE").mkdir(parents=True)
    lines, ids, n = {}, [], 0
    for name, count in SPLITS.items():
        lines[name] = [HEADER]
        for _ in range(count):
            video_id = f"-{n:02d}abcdEFG"
            clip(root / "AVE" / f"{video_id}.mp4", n)
            lines[name].append(f"{CATEGORIES[n % 3]}&{video_id}&good&{n % 4}&{n % 4 + 5}")
            ids.append(video_id)
            n += 1
        (root / name).write_text("\n".join(lines[name]) + "\n")
    annotations = [row for name in SPLITS for row in lines[name][1:]]
    (root / "Annotations.txt").write_text("\n".join(annotations) + "\n")
    return ids


def test_ave_scan_classes_splits_and_issues(tmp_path: Path):
    ids = ave_layout(tmp_path)
    with open(tmp_path / "testSet.txt", "a") as fh:
        fh.write("Bark&-missing00&good&0&10\n")  # line 4: no clip
        fh.write("Goat&-88goatGoa&good&0&10\n")  # line 5: category not in Annotations.txt
        fh.write("Bark&-01abcdEFG\n")  # line 6: malformed
    adapter = ADAPTERS.get("ave")()
    items, issues = adapter.scan(tmp_path)
    assert [i.sample_id for i in items] == ids
    assert [i.split for i in items] == ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    assert adapter.class_names(items) == sorted(CATEGORIES)
    assert items[1].label == "Male speech, man speaking"
    assert items[1].paths == {
        "audio": tmp_path / "AVE" / f"{ids[1]}.mp4",
        "visual": tmp_path / "AVE" / f"{ids[1]}.mp4",
    }
    assert items[1].meta == {"quality": "good", "start_s": "1", "end_s": "6"}
    assert [i.sample_id for i in issues] == ["testSet.txt line 6"] + [f"testSet.txt line {n}" for n in (4, 5)]
    reasons = [i.reason for i in issues]
    assert "expected Category&VideoID&Quality&StartTime&EndTime" in reasons[0]
    assert "missing clip" in reasons[1] and issues[1].path.endswith("-missing00.mp4")
    assert "unknown category 'Goat'" in reasons[2]


def test_ave_duplicated_video_ids(tmp_path: Path):
    """An ID listed with two categories (as 45 are in the release): last (OGM-GE), first or drop."""
    ids = ave_layout(tmp_path)
    with open(tmp_path / "valSet.txt", "a") as fh:
        fh.write(f"Bark&{ids[1]}&good&0&10\n")  # valSet line 4 relists a train clip as Bark
    found = {}
    for mode in ("last", "first", "drop"):
        adapter = ADAPTERS.get("ave")()
        items, issues = adapter.scan(tmp_path, duplicates=mode)
        found[mode] = (
            {i.sample_id: (i.label, i.split) for i in items}.get(ids[1]),
            [i.line() for i in issues],
        )
        assert adapter.source_attrs == {"duplicated_ids": 1} and len(items) == 10 - (mode == "drop")
    clip_path = tmp_path / "AVE" / f"{ids[1]}.mp4"
    assert found["last"] == (
        ("Bark", "val"),
        [
            f"trainSet.txt line 3: {clip_path}: VideoID '{ids[1]}' is listed 2 times; "
            "duplicates=last keeps valSet.txt line 4"
        ],
    )
    assert found["first"][0] == ("Male speech, man speaking", "train")
    assert found["first"][1][0].startswith("valSet.txt line 4: ")
    assert found["drop"][0] is None and len(found["drop"][1]) == 2
    assert all("drops every line of it" in line for line in found["drop"][1])
    with pytest.raises(LayoutError, match="duplicates must be one of last, first, drop"):
        ADAPTERS.get("ave")().scan(tmp_path, duplicates="keep")


def test_ave_release_prep_through_the_cli(tmp_path: Path):
    ave_layout(tmp_path / "AVE_Dataset")
    out = tmp_path / "ave.h5"
    args = ["prep", "ave", "--root", str(tmp_path / "AVE_Dataset"), "--out", str(out), "--preset", "avmnist"]
    result = CliRunner().invoke(app, [*args, "--workers", "1", "--opt", "duplicates=first"])
    assert result.exit_code == 0, result.output
    info = read_info(out)
    assert info.split_counts == {"train": 6, "val": 2, "test": 2} and info.class_names == sorted(CATEGORIES)
    assert info.attrs["option_duplicates"] == "first" and info.attrs["source_duplicated_ids"] == 0


def test_ave_layout_errors(tmp_path: Path):
    with pytest.raises(LayoutError, match=r"Annotations\.txt: missing file"):
        ADAPTERS.get("ave")().scan(tmp_path)
    for name in ("Annotations.txt", *SPLITS):
        (tmp_path / name).write_text(HEADER + "\n")
    with pytest.raises(LayoutError, match=r"AVE: missing folder of <VideoID>\.mp4 clips"):
        ADAPTERS.get("ave")().scan(tmp_path)
    (tmp_path / "AVE").mkdir()
    with pytest.raises(LayoutError, match="no annotation lines"):
        ADAPTERS.get("ave")().scan(tmp_path)
    (tmp_path / "valSet.txt").unlink()
    with pytest.raises(LayoutError, match=r"valSet\.txt: missing file"):
        ADAPTERS.get("ave")().scan(tmp_path)


def test_ave_decode_with_its_preset(tmp_path: Path):
    ave_layout(tmp_path)
    adapter = ADAPTERS.get("ave")()
    items, _ = adapter.scan(tmp_path)
    arrays = adapter.decode(items[0], PRESETS.get("ave"))
    assert arrays["audio/spec"].shape == (257, 625) and arrays["audio/spec"].dtype == np.float32
    assert arrays["visual/frames"].shape == (3, 224, 224, 3)


@pytest.mark.slow
def test_ave_prep_and_train(tmp_path: Path):
    """run_prep (the small avmnist audio/frame settings) and one epoch: joint and Remix."""
    from mmrebal.cache.format import read_info
    from mmrebal.prep.runner import run_prep

    ave_layout(tmp_path / "raw")
    out = tmp_path / "ave.h5"
    report = run_prep("ave", tmp_path / "raw", out, preset="avmnist", workers=1)
    info = read_info(out)
    assert report.cached == 10 and not report.issues
    assert info.split_counts == {"train": 6, "val": 2, "test": 2}
    assert info.class_names == sorted(CATEGORIES)
    assert info.shapes == {"audio/spec": (64, 63), "visual/frames": (3, 32, 32, 3)}
    tiny = {m: {"channels": [8, 16]} for m in ("audio", "visual")}
    for sampler, options in (("uniform", {}), ("remix", {"warmup": 0})):
        steps = train_briefly(out, tmp_path / sampler, sampler, encoder_options=tiny, **options)
        assert set(steps["modality"]) <= {"audio", "visual"} and len(steps)
