"""The nvgesture adapter and Farneback flow on a tiny copy of the release layout (real .avi files)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from _adapter_train import train_briefly
from typer.testing import CliRunner

from mmrebal.cache.format import read_info
from mmrebal.cli import app
from mmrebal.media import MediaError
from mmrebal.media.flow import farneback_flow, flow_to_frames, read_flow
from mmrebal.media.video import read_frames
from mmrebal.prep.adapters import ADAPTERS, LayoutError
from mmrebal.prep.presets import PRESETS

torch.set_num_threads(1)
TRAIN_LIST = "nvgesture_train_correct_cvpr2016_v2.lst"
TEST_LIST = "nvgesture_test_correct_cvpr2016_v2.lst"
V1 = {TRAIN_LIST: "nvgesture_train_correct_cvpr2016.lst", TEST_LIST: "nvgesture_test_correct_cvpr2016.lst"}


def write_avi(path: Path, frames: np.ndarray, fps: int = 30) -> None:
    """MPEG-4 Part 2 in AVI, as the NVGesture sensors' files are AVI."""
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"qscale": "2"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def moving_square(count: int, step: int, seed: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A textured square moving right by ``step`` pixels per frame on a grey background."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    frames = np.full((count, *size, 3), 100, dtype=np.uint8)
    for k in range(count):
        left = 4 + step * k
        frames[k, 16:32, left : left + 16] = texture
    return frames


def gesture(root: Path, folder: str, seed: int, count: int = 16) -> None:
    path = root / folder
    path.mkdir(parents=True)
    write_avi(path / "sk_color.avi", moving_square(count, 2, seed))
    write_avi(path / "sk_depth.avi", moving_square(count, 1, seed + 1))


def line(folder: str, label: int, start: int = 2, end: int = 14) -> str:
    """One list line as the release writes it: space-separated key:value fields and a trailing space."""
    return (
        f"path:./{folder} depth:sk_depth:{start}:{end} color:sk_color:{start}:{end} "
        f"duo_left:duo_left:{start + 20}:{end + 20} label:{label} "
    )


def write_list(path: Path, lines: list[str], v1: bool = False) -> None:
    """LF lines; the v1 lists lack the final newline, the _v2 lists end with one."""
    path.write_text("\n".join(lines) + ("" if v1 else "\n"))


def nvgesture_layout(root: Path, train: int, test: int, v1: bool = False) -> list[str]:
    """``Video_data/class_NN/subjectS_rR/sk_{color,depth}.avi`` and the two split lists (_v2, or v1 names)."""
    folders = []
    for n in range(train + test):
        label = n % 3 + 1
        folder = f"Video_data/class_{label:02d}/subject{n}_r0"
        gesture(root, folder, n)
        folders.append(folder)
    lists = {name: (V1[name] if v1 else name) for name in (TRAIN_LIST, TEST_LIST)}
    write_list(root / lists[TRAIN_LIST], [line(f, n % 3 + 1) for n, f in enumerate(folders[:train])], v1)
    write_list(
        root / lists[TEST_LIST], [line(f, n % 3 + 1) for n, f in enumerate(folders[train:], train)], v1
    )
    return folders


def test_read_frames_within_a_frame_range(tmp_path: Path):
    frames = np.stack([np.full((16, 16, 3), 10 * k, dtype=np.uint8) for k in range(20)])
    write_avi(tmp_path / "ramp.avi", frames)
    picked = read_frames(tmp_path / "ramp.avi", 2, (16, 16), frame_range=(5, 15))
    np.testing.assert_allclose(picked.mean(axis=(1, 2, 3)), [70, 120], atol=4)  # frames 7 and 12
    clamped = read_frames(tmp_path / "ramp.avi", 1, (16, 16), frame_range=(18, 40))
    assert abs(clamped.mean() - 190) < 4  # window [18, 20): its middle frame 19
    with pytest.raises(MediaError, match=r"frame range \[25, 30\) is outside the clip's 20 frames"):
        read_frames(tmp_path / "ramp.avi", 1, (16, 16), frame_range=(25, 30))


def test_farneback_flow_sees_the_motion_and_quantises_it(tmp_path: Path):
    frames = moving_square(6, 2, 0)
    flow = farneback_flow(frames, np.array([0, 5]))
    assert flow.shape == (2, 48, 64, 2) and flow.dtype == np.float32
    inside = flow[:, 18:30, 10:18]
    assert inside[..., 0].mean() > 1.0 and abs(inside[..., 1].mean()) < 0.5  # rightwards, not down
    assert np.abs(flow[:, 42:, 44:]).max() < 0.1  # the background far from the square does not move
    stored = flow_to_frames(np.array([[[[0.0, -40.0], [5.0, 0.0]]]]), bound=20.0)
    assert stored.tolist() == [[[[128, 0, 255], [159, 128, 64]]]]
    write_avi(tmp_path / "c.avi", moving_square(16, 2, 0))
    frames_out = read_flow(tmp_path / "c.avi", 3, (48, 64), (2, 14))
    assert frames_out.shape == (3, 48, 64, 3) and frames_out.dtype == np.uint8
    assert frames_out[:, 18:30, 10:30, 0].mean() > 135 and abs(frames_out[:, 40:, :, 0].mean() - 128) < 3


def test_nvgesture_scan_labels_flow_sources_and_issues(tmp_path: Path):
    folders = nvgesture_layout(tmp_path, train=3, test=1)
    write_avi(tmp_path / folders[1] / "sk_flow.avi", moving_square(16, 0, 9))
    with open(tmp_path / TRAIN_LIST, "a") as fh:
        fh.write(line(folders[0], 26) + "\n")  # line 4: label outside 1..25
        fh.write(line("Video_data/class_09/gone", 9) + "\n")  # line 5: no such videos
        fh.write(line(folders[2], 1).replace("color:sk_color:2:14", "color:sk_color:2:x") + "\n")  # line 6
        fh.write(f"path:./{folders[2]} label:1\n")  # line 7: no color/depth fields
    adapter = ADAPTERS.get("nvgesture")()
    items, issues = adapter.scan(tmp_path)
    assert [(i.sample_id, i.label, i.split) for i in items] == [
        (folders[0], "class_01", "train"),
        (folders[1], "class_02", "train"),
        (folders[2], "class_03", "train"),
        (folders[3], "class_01", "test"),
    ]
    assert (
        adapter.class_names(items)[:2] == ["class_01", "class_02"] and len(adapter.class_names(items)) == 25
    )
    assert items[0].paths == {
        "rgb": tmp_path / folders[0] / "sk_color.avi",
        "depth": tmp_path / folders[0] / "sk_depth.avi",
        "flow": tmp_path / folders[0] / "sk_color.avi",
    }
    assert items[0].meta == {
        "ranges": {m: [2, 14] for m in ("rgb", "depth", "flow")},
        "flow_source": "farneback",
    }
    assert items[1].paths["flow"].name == "sk_flow.avi" and items[1].meta["flow_source"] == "file"
    assert [i.sample_id for i in issues] == [f"{TRAIN_LIST} line {n}" for n in (4, 5, 6, 7)]
    assert "unknown label 26" in issues[0].reason
    assert issues[1].path.endswith("gone/sk_color.avi") and "missing rgb video" in issues[1].reason
    assert "bad field" in issues[2].reason and "missing field 'color'" in issues[3].reason
    computed, _ = ADAPTERS.get("nvgesture")().scan(tmp_path, flow="compute")
    assert computed[1].meta["flow_source"] == "farneback"
    strict, strict_issues = ADAPTERS.get("nvgesture")().scan(tmp_path, flow="file")
    assert [i.sample_id for i in strict] == [folders[1]]
    assert "missing flow video (flow=file)" in strict_issues[0].reason


def test_nvgesture_prefers_v2_and_records_the_list(tmp_path: Path):
    folders = nvgesture_layout(tmp_path, train=2, test=1, v1=True)
    adapter = ADAPTERS.get("nvgesture")()
    items, _ = adapter.scan(tmp_path)
    assert adapter.source_attrs == {"train_list": V1[TRAIN_LIST], "test_list": V1[TEST_LIST]}
    assert len(adapter.notes) == 2 and "the v1 train list" in adapter.notes[0]
    assert TRAIN_LIST in adapter.notes[0] and [i.label for i in items] == ["class_01", "class_02", "class_03"]
    # _v2 beside v1 relabels class_01/subject0_r0 (as the real _v2 does for class_01/subject4_r2)
    write_list(tmp_path / TRAIN_LIST, [line(folders[0], 2), line(folders[1], 2)])
    write_list(tmp_path / TEST_LIST, [line(folders[2], 3)])
    adapter = ADAPTERS.get("nvgesture")()
    items, _ = adapter.scan(tmp_path)
    assert [i.label for i in items] == ["class_02", "class_02", "class_03"] and not adapter.notes
    assert adapter.source_attrs == {"train_list": TRAIN_LIST, "test_list": TEST_LIST}
    bss = tmp_path / "bss"
    bss.mkdir()
    (bss / "Video_data").symlink_to(tmp_path / "Video_data")
    write_list(bss / "nvgesture_train_correct_v2.lst", [line(folders[0], 2)])  # the BSS repo's names
    write_list(bss / "nvgesture_test_correct_v2.lst", [line(folders[2], 3)])
    adapter = ADAPTERS.get("nvgesture")()
    assert (
        len(adapter.scan(bss)[0]) == 2
        and adapter.source_attrs["train_list"] == "nvgesture_train_correct_v2.lst"
    )


def test_nvgesture_layout_errors(tmp_path: Path):
    with pytest.raises(LayoutError, match=f"{TRAIN_LIST}: missing train list"):
        ADAPTERS.get("nvgesture")().scan(tmp_path)
    gesture(tmp_path, "Video_data/class_01/subject1_r0", 0)
    write_list(tmp_path / TRAIN_LIST, [line("Video_data/class_01/subject1_r0", 1)])
    with pytest.raises(LayoutError, match=f"{TEST_LIST}: missing test list"):
        ADAPTERS.get("nvgesture")().scan(tmp_path)
    write_list(tmp_path / TEST_LIST, [])
    items, _ = ADAPTERS.get("nvgesture")().scan(tmp_path)
    assert len(items) == 1
    with pytest.raises(LayoutError, match="flow must be one of auto, file, compute"):
        ADAPTERS.get("nvgesture")().scan(tmp_path, flow="tvl1")


def test_nvgesture_v1_release_prep_through_the_cli(tmp_path: Path):
    nvgesture_layout(tmp_path / "nvGesture", train=6, test=1, v1=True)  # 2 per class: val gets one each
    out = tmp_path / "nv.h5"
    args = ["prep", "nvgesture", "--root", str(tmp_path / "nvGesture"), "--out", str(out)]
    result = CliRunner().invoke(
        app, [*args, "--preset", "avmnist", "--workers", "1", "--val-fraction", "0.5"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("the v1 train list") == 1 and result.output.count("the v1 test list") == 1
    info = read_info(out)
    assert info.shapes == {f"{m}/frames": (3, 32, 32, 3) for m in ("rgb", "depth", "flow")}
    assert info.split_counts["test"] == 1 and info.attrs["source_train_list"] == V1[TRAIN_LIST]


def test_nvgesture_decode_shapes(tmp_path: Path):
    folders = nvgesture_layout(tmp_path, train=1, test=0)
    adapter = ADAPTERS.get("nvgesture")()
    items, _ = adapter.scan(tmp_path)
    arrays = adapter.decode(items[0], PRESETS.get("nvgesture"))
    assert {k: v.shape for k, v in arrays.items()} == {
        f"{m}/frames": (8, 112, 112, 3) for m in ("rgb", "depth", "flow")
    }
    np.testing.assert_array_equal(
        arrays["rgb/frames"],
        read_frames(tmp_path / folders[0] / "sk_color.avi", 8, (112, 112), frame_range=(2, 14)),
    )
    assert arrays["flow/frames"][..., 0].max() > 150  # the square's rightward motion


@pytest.mark.slow
def test_nvgesture_prep_and_train_three_modalities(tmp_path: Path):
    """run_prep on the layout, then one epoch of a 3-modality model: joint (uniform) and DUS-H."""
    from mmrebal.cache.format import read_info
    from mmrebal.prep.runner import run_prep

    nvgesture_layout(tmp_path / "raw", train=9, test=3)
    out = tmp_path / "nv.h5"
    report = run_prep("nvgesture", tmp_path / "raw", out, workers=1)
    info = read_info(out)
    assert report.cached == 12 and not report.issues
    assert info.modalities == {"rgb": "frames", "depth": "frames", "flow": "frames"}
    assert info.shapes == {f"{m}/frames": (8, 112, 112, 3) for m in ("rgb", "depth", "flow")}
    assert info.split_counts["test"] == 3 and info.split_counts["train"] + info.split_counts["val"] == 9
    assert info.attrs["option_flow"] == "auto" and info.attrs["preset"] == "nvgesture"
    tiny = {m: {"channels": [8, 16]} for m in ("rgb", "depth", "flow")}
    for sampler in ("uniform", "dus-h"):
        steps = train_briefly(out, tmp_path / sampler, sampler, encoder_options=tiny)
        assert set(steps["modality"]) == {"rgb", "depth", "flow"}
