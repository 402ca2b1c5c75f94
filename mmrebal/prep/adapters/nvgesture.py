"""NVIDIA dynamic hand gestures (NVGesture) from its release: split lists + ``Video_data/``.

``--root`` holds the split lists and the folders they point to. Per split the first found of
``nvgesture_<split>_correct_cvpr2016_v2.lst``, ``nvgesture_<split>_correct_v2.lst`` (the BSS repo's name)
and ``nvgesture_<split>_correct_cvpr2016.lst`` is read (``train_list=``/``test_list=`` override): ``_v2``
corrects 15 train and 8 test labels of v1 (nothing else differs), so reading v1 prints a note. The
lists read are in the cache attributes (``source_train_list``, ``source_test_list``). A line is
space-separated ``key:value`` fields (LF; each line ends with a space, v1 lacks the final newline)::

    path:./Video_data/class_01/subject13_r0 depth:sk_depth:138:218 color:sk_color:138:218 duo_left:... label:1

``color``/``depth`` name a video in the ``path`` folder (``sk_color`` -> ``sk_color.avi``) and its
gesture window [start, end) in frames; ``label`` 1..25 becomes class ``class_01``..``class_25``
(index 0..24). Three modalities, all kind ``frames``: ``rgb`` (sk_color), ``depth`` (sk_depth, its
grey levels as RGB) and ``flow``. Flow comes from a ``flow:NAME:start:end`` field or an
``sk_flow.avi`` beside sk_color (read like frames, stored as it is), else it is computed from the RGB
window with OpenCV Farneback (:mod:`mmrebal.media.flow`: parameters, and uint8 dx/dy/magnitude clipped
at ``flow_bound`` pixels). ``flow``: ``auto`` (default: a file when there is one), ``file`` (a missing
flow video skips the gesture) or ``compute`` (always Farneback). Frames are the preset's count of evenly
spaced picks inside each window, at the preset's size. Sample ids are the ``path`` values without
the leading ``./``. Not reproduced: the BSS repo's precomputed flow (``Video_data/flow_data/<split>/
<row>.npy``) is not part of the NVIDIA release, so flow here is a file beside the videos or Farneback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmrebal.media.flow import DEFAULT_BOUND, read_flow
from mmrebal.media.video import read_frames
from mmrebal.prep.adapters import ADAPTERS
from mmrebal.prep.adapters.base import Adapter, LayoutError, PrepIssue, SourceItem, require_folder
from mmrebal.prep.presets import Preset

LIST_NAMES = {  # preferred first; the last is v1
    split: (
        f"nvgesture_{split}_correct_cvpr2016_v2.lst",
        f"nvgesture_{split}_correct_v2.lst",
        f"nvgesture_{split}_correct_cvpr2016.lst",
    )
    for split in ("train", "test")
}
NUM_CLASSES = 25
CLASSES = tuple(f"class_{k:02d}" for k in range(1, NUM_CLASSES + 1))
FLOW_MODES = ("auto", "file", "compute")
_REQUIRED = ("path", "color", "depth", "label")


@ADAPTERS.register("nvgesture")
class NvGestureAdapter(Adapter):
    modalities = {"rgb": "frames", "depth": "frames", "flow": "frames"}
    default_preset = "nvgesture"
    classes = CLASSES

    def __init__(self) -> None:
        super().__init__()
        self.flow_bound = DEFAULT_BOUND

    def scan(
        self,
        root: Path | None,
        train_list: str | Path | None = None,
        test_list: str | Path | None = None,
        flow: str = "auto",
        flow_bound: float = DEFAULT_BOUND,
        **options: Any,
    ) -> tuple[list[SourceItem], list[PrepIssue]]:
        root = require_folder(root, "--root must be the NVGesture folder with the .lst files")
        if flow not in FLOW_MODES:
            raise LayoutError(f"flow must be one of {', '.join(FLOW_MODES)}, got {flow!r}")
        if float(flow_bound) <= 0:
            raise LayoutError(f"flow_bound must be positive, got {flow_bound}")
        self.flow_bound = float(flow_bound)
        lists = {"train": _list_path(root, "train", train_list), "test": _list_path(root, "test", test_list)}
        for split, path in lists.items():
            self.source_attrs[f"{split}_list"] = path.name
            if path.name == LIST_NAMES[split][-1]:
                self.notes.append(
                    f"{path}: the v1 {split} list; {LIST_NAMES[split][0]} corrects some of its labels "
                    "(15 train, 8 test), put it beside v1 to use it"
                )
        items: list[SourceItem] = []
        issues: list[PrepIssue] = []
        seen: set[str] = set()
        for split, path in lists.items():
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    result = _parse_line(line, f"{path.name} line {number}", path, root, split, flow, seen)
                    (items if isinstance(result, SourceItem) else issues).append(result)
        return items, issues

    def decode(self, item: SourceItem, preset: Preset) -> dict[str, np.ndarray]:
        if preset.frames is None:
            raise ValueError(f"preset {preset.name!r} has no frame settings")
        count, size = preset.frames.num_frames, preset.frames.size
        ranges = item.meta["ranges"]
        out = {
            f"{m}/frames": read_frames(item.paths[m], count, size, frame_range=tuple(ranges[m]))
            for m in ("rgb", "depth")
        }
        if item.meta["flow_source"] == "file":
            out["flow/frames"] = read_frames(
                item.paths["flow"], count, size, frame_range=tuple(ranges["flow"])
            )
        else:
            out["flow/frames"] = read_flow(
                item.paths["flow"], count, size, tuple(ranges["flow"]), self.flow_bound
            )
        return out


def _list_path(root: Path, split: str, given: str | Path | None) -> Path:
    if given is not None:
        path = Path(given) if Path(given).is_absolute() else root / given
        if not path.is_file():
            raise LayoutError(f"{path}: missing {split} list; fix {split}_list=")
        return path
    for name in LIST_NAMES[split]:
        if (root / name).is_file():
            return root / name
    raise LayoutError(
        f"{root / LIST_NAMES[split][0]}: missing {split} list (nor v1 {LIST_NAMES[split][-1]}); "
        "--root must be the NVGesture folder"
    )


def _video_field(value: str) -> tuple[str, int, int]:
    """``sk_color:138:218`` -> ("sk_color", 138, 218); ValueError when it is not NAME:START:END."""
    name, start, end = value.split(":")
    first, last = int(start), int(end)
    if not 0 <= first < last:
        raise ValueError(f"empty frame range [{first}, {last})")
    return name, first, last


def _parse_line(
    line: str, where: str, path: Path, root: Path, split: str, flow_mode: str, seen: set[str]
) -> SourceItem | PrepIssue:
    fields = dict(token.partition(":")[::2] for token in line.split())
    missing = [key for key in _REQUIRED if not fields.get(key)]
    if missing:
        return PrepIssue(
            where, str(path), f"missing field {missing[0]!r}:; the line needs {', '.join(_REQUIRED)}"
        )
    folder = root / fields["path"]
    sample_id = fields["path"].removeprefix("./")
    try:
        label = int(fields["label"])
        videos = {"rgb": _video_field(fields["color"]), "depth": _video_field(fields["depth"])}
        if "flow" in fields:
            videos["flow"] = _video_field(fields["flow"])
    except ValueError as err:
        return PrepIssue(where, str(path), f"bad field ({err}); fields are NAME:START:END and label:N")
    if not 1 <= label <= NUM_CLASSES:
        return PrepIssue(where, str(path), f"unknown label {label} (known: 1..{NUM_CLASSES}); fix the line")
    if sample_id in seen:
        return PrepIssue(where, str(path), f"duplicate path {sample_id!r}; each gesture must be listed once")
    paths = {m: folder / f"{name}.avi" for m, (name, _, _) in videos.items()}
    ranges = {m: [start, end] for m, (_, start, end) in videos.items()}
    if "flow" not in paths and flow_mode != "compute" and (folder / "sk_flow.avi").is_file():
        paths["flow"], ranges["flow"] = folder / "sk_flow.avi", ranges["rgb"]
    if flow_mode == "compute" or "flow" not in paths:
        if flow_mode == "file":
            return PrepIssue(where, str(folder / "sk_flow.avi"), "missing flow video (flow=file); add it")
        paths["flow"], ranges["flow"] = paths["rgb"], ranges["rgb"]
        source = "farneback"
    else:
        source = "file"
    for modality, video in paths.items():
        if not video.is_file():
            return PrepIssue(where, str(video), f"missing {modality} video; restore it or drop the line")
    seen.add(sample_id)
    meta = {"ranges": ranges, "flow_source": source}
    return SourceItem(sample_id, CLASSES[label - 1], split, paths, meta)
