"""The ave adapter on a tiny copy of the AVE release layout (real mp4 clips with AAC audio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _adapter_train import train_briefly

from mmrebal.media.video import write_clip
from mmrebal.prep.adapters import ADAPTERS, LayoutError, load_builtin
from mmrebal.prep.presets import PRESETS

torch.set_num_threads(1)
HEADER = "Category&VideoID&Quality&StartTime&EndTime"
CATEGORIES = ("Church bell", "Male speech, man speaking", "Bark")
SPLITS = {"trainSet.txt": 6, "valSet.txt": 2, "testSet.txt": 2}


@pytest.fixture(scope="module", autouse=True)
def _adapters() -> None:
    load_builtin()


def clip(path: Path, seed: int, seconds: float = 1.0, rate: int = 16000) -> None:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    tone = 0.3 * np.sin(2 * np.pi * (200 + 100 * seed) * np.arange(round(seconds * rate)) / rate)
    write_clip(path, frames, fps=4, audio=tone.astype(np.float32), sample_rate=rate)


def ave_layout(root: Path) -> list[str]:
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
    annotations = [HEADER] + [row for name in SPLITS for row in lines[name][1:]]
    (root / "Annotations.txt").write_text("\n".join(annotations) + "\n")
    return ids


def test_ave_scan_classes_splits_and_issues(tmp_path: Path):
    ids = ave_layout(tmp_path)
    with open(tmp_path / "testSet.txt", "a") as fh:
        fh.write("Bark&-missing00&good&0&10\n")  # line 4: no clip
        fh.write("Goat&-00abcdEFG&good&0&10\n")  # line 5: category not in Annotations.txt
        fh.write("Bark&-01abcdEFG\n")  # line 6: malformed
        fh.write(f"Bark&{ids[0]}&good&0&10\n")  # line 7: listed twice
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
    assert [i.sample_id for i in issues] == [f"testSet.txt line {n}" for n in (4, 5, 6, 7)]
    reasons = [i.reason for i in issues]
    assert "missing clip" in reasons[0] and issues[0].path.endswith("-missing00.mp4")
    assert "unknown category 'Goat'" in reasons[1]
    assert "expected Category&VideoID&Quality&StartTime&EndTime" in reasons[2]
    assert "duplicate VideoID" in reasons[3]


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
