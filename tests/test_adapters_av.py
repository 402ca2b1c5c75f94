"""The cremad, kinetics-sounds and manifest adapters on real small layouts written here."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mmrebal.cache.format import read_info
from mmrebal.cli import app
from mmrebal.media.video import write_clip
from mmrebal.prep.adapters import ADAPTERS, LayoutError, PrepIssue, SourceItem
from mmrebal.prep.adapters.kinetics_sounds import KS31
from mmrebal.prep.presets import PRESETS

# The Free Spoken Digit Dataset lives beside the repo (never copied into it); MMREBAL_FSDD overrides.
_SHARED_FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"
FSDD = Path(os.environ.get("MMREBAL_FSDD", _SHARED_FSDD))
EMOTIONS = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")


def frames(count: int = 6, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (count, size, size, 3), dtype=np.uint8)


def voice(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    return (0.2 * np.random.default_rng(seed).standard_normal(round(seconds * rate))).astype(np.float32)


def cremad_layout(root: Path, per_class: int = 2) -> list[str]:
    """CREMA-D on GitHub: ``AudioWAV/<ACTOR>_<SENTENCE>_<EMOTION>_<LEVEL>.wav`` + ``VideoFlash/*.flv``."""
    (root / "AudioWAV").mkdir(parents=True)
    (root / "VideoFlash").mkdir()
    names = []
    for actor in range(per_class):
        for emotion in EMOTIONS:
            sentence, level = ("DFA", "XX") if actor % 2 == 0 else ("IEO", "HI")
            name = f"10{actor:02d}_{sentence}_{emotion}_{level}"
            sf.write(root / "AudioWAV" / f"{name}.wav", voice(0.4, 16000, actor), 16000, subtype="PCM_16")
            write_clip(root / "VideoFlash" / f"{name}.flv", frames(4, seed=actor), fps=4)
            names.append(name)
    return names


def ogm_split_lists(root: Path, train: list[str], test: list[str]) -> None:
    """OGM-GE's ``data/CREMAD/train.csv``/``test.csv``: LF, no header, rows ``<name>,<emotion>``."""
    for name, rows in (("train.csv", train), ("test.csv", test)):
        (root / name).write_text("".join(f"{n},{n.split('_')[2]}\n" for n in rows))


def lfs_pointer(path: Path, size: int) -> None:
    """What a CREMA-D clone holds before ``git lfs pull``: the LFS spec line, the sha256, the size."""
    digest = hashlib.sha256(path.name.encode()).hexdigest()
    path.write_text(f"version https://git-lfs.github.com/spec/v1\noid sha256:{digest}\nsize {size}\n")


def test_cremad_scan_labels_seeded_split_and_issues(tmp_path: Path):
    names = cremad_layout(tmp_path)
    sf.write(tmp_path / "AudioWAV" / "notes.wav", voice(0.1, 16000), 16000)
    sf.write(tmp_path / "AudioWAV" / "1099_DFA_ANG_XX.wav", voice(0.1, 16000), 16000)
    adapter = ADAPTERS.get("cremad")()
    items, issues = adapter.scan(tmp_path)
    assert sorted(i.sample_id for i in items) == sorted(names)
    assert {i.sample_id: i.label for i in items}["1001_IEO_SAD_HI"] == "SAD"
    assert adapter.class_names(items) == list(EMOTIONS)
    reasons = {issue.sample_id: issue.reason for issue in issues}
    assert "name is not CREMA-D" in reasons["notes"]
    assert "no matching video" in reasons["1099_DFA_ANG_XX"]
    test = {i.sample_id for i in items if i.split == "test"}
    assert {i.split for i in items} == {"train", "test"}
    assert sorted(n.split("_")[2] for n in test) == sorted(EMOTIONS)  # stratified: one per class here
    again, _ = ADAPTERS.get("cremad")().scan(tmp_path)
    assert {i.sample_id for i in again if i.split == "test"} == test
    other, _ = ADAPTERS.get("cremad")().scan(tmp_path, seed=5)
    assert {i.sample_id for i in other if i.split == "test"} != test


def test_cremad_uses_ogm_split_lists_and_decodes(tmp_path: Path):
    names = cremad_layout(tmp_path, per_class=1)
    ogm_split_lists(tmp_path, names[:4], names[4:5])
    adapter = ADAPTERS.get("cremad")()
    items, issues = adapter.scan(tmp_path)
    assert {i.sample_id: i.split for i in items} == {**dict.fromkeys(names[:4], "train"), names[4]: "test"}
    assert [issue.sample_id for issue in issues] == [names[5]]
    assert "not listed" in issues[0].reason
    arrays = adapter.decode(items[0], PRESETS.get("ogm"))
    assert arrays["audio/spec"].shape == (257, 188) and arrays["audio/spec"].dtype == np.float32
    assert arrays["visual/frames"].shape == (1, 224, 224, 3) and arrays["visual/frames"].dtype == np.uint8


def test_cremad_release_prep_through_the_cli(tmp_path: Path):
    names = cremad_layout(tmp_path / "CREMA-D", per_class=2)
    ogm_split_lists(tmp_path / "CREMA-D", names[:10], names[10:])
    out = tmp_path / "cremad.h5"
    args = ["prep", "cremad", "--root", str(tmp_path / "CREMA-D"), "--out", str(out), "--preset", "avmnist"]
    result = CliRunner().invoke(app, [*args, "--workers", "1", "--val-fraction", "0.2"])
    assert result.exit_code == 0, result.output
    info = read_info(out)
    assert info.class_names == list(EMOTIONS) and info.n == 12
    assert info.split_counts["test"] == 2 and info.split_counts["train"] + info.split_counts["val"] == 10
    assert info.attrs["test_split"] == {"method": "OGM-GE lists train.csv/test.csv"}


def test_cremad_without_git_lfs_pull_is_one_line(tmp_path: Path):
    root = tmp_path / "CREMA-D"
    for name in cremad_layout(root, per_class=1):
        lfs_pointer(root / "AudioWAV" / f"{name}.wav", 70514)
        lfs_pointer(root / "VideoFlash" / f"{name}.flv", 253911)
    assert (root / "AudioWAV" / "1000_DFA_NEU_XX.wav").stat().st_size == 130  # as in the clone
    with pytest.raises(LayoutError, match=r"12 of 12 files .* Git LFS pointers .*run `git lfs pull`"):
        ADAPTERS.get("cremad")().scan(root)
    result = CliRunner().invoke(app, ["prep", "cremad", "--root", str(root), "--out", str(tmp_path / "c.h5")])
    assert result.exit_code != 0 and result.output.count("git lfs pull") == 1
    assert "corrupt" not in result.output and not (tmp_path / "c.h5").exists()


def test_cremad_layout_errors(tmp_path: Path):
    with pytest.raises(LayoutError, match="AudioWAV: missing folder"):
        ADAPTERS.get("cremad")().scan(tmp_path)
    with pytest.raises(LayoutError, match="needs --root"):
        ADAPTERS.get("cremad")().scan(None)


def ks_clip(path: Path, seed: int) -> None:
    """A Kinetics clip: one mp4 with H.264 frames and an AAC audio track."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_clip(path, frames(10, seed=seed), fps=5, audio=voice(2.0, 16000, seed), sample_rate=16000)


KINETICS_HEADER = "label,youtube_id,time_start,time_end,split"  # Kinetics-700; Kinetics-400 adds ,is_cc
KS_ROWS = [  # (label, youtube_id, start, end, split as Kinetics-700 writes it)
    ("playing drums", "--4-0ihtnBU", 58, 68, "train"),
    ("singing", "-00nar1nEPc", 33, 43, "train"),
    ("playing drums", "--6q_33gNew", 132, 142, "train"),
    ("tapping pen", "-3Mwkq-7TV4", 2, 12, "validate"),
    ("singing", "-74csnCOiUs", 0, 10, "validate"),
]


def kinetics_layout(root: Path) -> list[str]:
    """Kinetics-700 annotation CSVs (``annotations/{train,validate}.csv``), clips in ``<split>/<label>/``.

    Each CSV also has a row of a class outside Kinetics-Sounds (``abseiling``), as the real ones do.
    """
    (root / "annotations").mkdir(parents=True)
    clip_ids = []
    for split in ("train", "validate"):
        lines = [KINETICS_HEADER, f"abseiling,-3B32lodo2M,59,69,{split}"]
        for n, (label, ytid, start, end, row_split) in enumerate(KS_ROWS):
            if row_split == split:
                clip_id = f"{ytid}_{start:06d}_{end:06d}"
                ks_clip(root / split / label / f"{clip_id}.mp4", n)
                lines.append(f"{label},{ytid},{start},{end},{split}")
                clip_ids.append(clip_id)
        (root / "annotations" / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return clip_ids


def ogm_ks_layout(root: Path) -> list[str]:
    """OGM-GE's ``my_train.txt``/``my_test.txt`` (CRLF, ``<clip id>,10,<label index>``) and the clips.

    Train ids are ``<ytid>_<start:06d>_<end:06d>``, test ids ``<ytid>_<start>``, as in the real lists.
    """
    rows = {"my_train.txt": [], "my_test.txt": []}
    for n, (label, ytid, start, end, split) in enumerate(KS_ROWS):
        name = "my_train.txt" if split == "train" else "my_test.txt"
        clip_id = f"{ytid}_{start:06d}_{end:06d}" if split == "train" else f"{ytid}_{start}"
        ks_clip(root / "clips" / f"{clip_id}.mp4", n)
        rows[name].append(f"{clip_id},10,{KS31.index(label)}")
    for name, lines in rows.items():
        (root / name).write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return [row.split(",")[0] for lines in rows.values() for row in lines]


def ks_expected(clip_ids: list[str]) -> list[tuple[str, str, str]]:
    """(id, label, split) of the KS_ROWS clips: Kinetics' validation rows land in the test split."""
    return [
        (c, row[0], "train" if row[4] == "train" else "test")
        for c, row in zip(clip_ids, KS_ROWS, strict=True)
    ]


def test_kinetics_sounds_ships_the_31_classes():
    assert len(KS31) == 31 and list(KS31) == sorted(KS31) and len(set(KS31)) == 31
    assert {"playing bagpipes", "stomping grapes", "blowing out candles", "mowing lawn"} <= set(KS31)


def test_kinetics_sounds_from_kinetics_annotations(tmp_path: Path):
    clip_ids = kinetics_layout(tmp_path)
    with open(tmp_path / "annotations" / "train.csv", "a") as fh:
        fh.write("singing,gone_______,0,10,train\n")  # row 5: no clip downloaded
        fh.write("singing,--4-0ihtnBU,58,68,train\n")  # row 6: the same clip again
        fh.write("singing,--6q_33gNew,x,10,train\n")  # row 7
    adapter = ADAPTERS.get("kinetics-sounds")()
    items, issues = adapter.scan(tmp_path)
    assert [(i.sample_id, i.label, i.split) for i in items] == ks_expected(clip_ids)  # validate -> test
    assert items[0].paths["audio"] == tmp_path / "train" / "playing drums" / f"{clip_ids[0]}.mp4"
    assert adapter.class_names(items) == list(KS31)
    assert adapter.source_attrs["convention"] == "kinetics"
    assert adapter.source_attrs["rows_outside_classes"] == 2
    lines = [issue.line() for issue in issues]
    assert lines[0] == (
        "train.csv row 5: gone________000000_000010.mp4 or gone_______.mp4: "
        "no such clip under --root; download it or drop the row"
    )
    assert "row 6" in lines[1] and "duplicate id" in lines[1]
    assert "row 7" in lines[2] and "not numbers" in lines[2]
    kept, _ = ADAPTERS.get("kinetics-sounds")().scan(tmp_path, validation_as="val")
    assert [i.split for i in kept][-2:] == ["val", "val"]
    arrays = adapter.decode(items[0], PRESETS.get("bss-ks"))
    assert arrays["audio/spec"].shape == (257, 1003)
    assert arrays["visual/frames"].shape == (3, 224, 224, 3)


def test_kinetics_sounds_from_a_kinetics_400_csv(tmp_path: Path):
    """Kinetics-400's val.csv: an is_cc column, labels with spaces quoted, split ``val``."""
    ks_clip(tmp_path / "val" / "-3B32lodo2M_000059_000069.mp4", 0)
    (tmp_path / "val.csv").write_text(
        'label,youtube_id,time_start,time_end,split,is_cc\n"playing drums",-3B32lodo2M,59,69,val,0\n'
        '"air drumming",_dbcJuKJQNs,40,50,val,0\n'
    )
    adapter = ADAPTERS.get("kinetics-sounds")()
    items, issues = adapter.scan(tmp_path)
    assert [(i.sample_id, i.label, i.split) for i in items] == [
        ("-3B32lodo2M_000059_000069", "playing drums", "test")
    ]
    assert not issues and adapter.source_attrs["rows_outside_classes"] == 1


def test_kinetics_sounds_csv_without_times_matches_the_youtube_id(tmp_path: Path):
    """A table with only ``youtube_id,label`` (as the BSS repo reads) names clips by that id."""
    ks_clip(tmp_path / "clips" / "abc.mp4", 0)
    (tmp_path / "train.csv").write_text("youtube_id,label\nabc,singing\n")
    items, issues = ADAPTERS.get("kinetics-sounds")().scan(tmp_path)
    assert [(i.sample_id, i.split) for i in items] == [("abc", "train")] and not issues


def test_kinetics_sounds_from_ogm_lists(tmp_path: Path):
    clip_ids = ogm_ks_layout(tmp_path)
    with open(tmp_path / "my_test.txt", "ab") as fh:
        fh.write(b"-7aeB7vFtB4_37,10,31\r\n")  # line 3: index past the 31 classes
    adapter = ADAPTERS.get("kinetics-sounds")()
    items, issues = adapter.scan(tmp_path)
    assert [(i.sample_id, i.label, i.split) for i in items] == ks_expected(clip_ids)
    assert clip_ids[3:] == ["-3Mwkq-7TV4_2", "-74csnCOiUs_0"]
    assert adapter.source_attrs["convention"] == "ogm"
    assert [i.sample_id for i in issues] == ["my_test.txt line 3"]
    assert "label index 0..30" in issues[0].reason


@pytest.mark.parametrize("convention", ["kinetics", "ogm"])
def test_kinetics_sounds_prep_through_the_cli(tmp_path: Path, convention: str):
    root = tmp_path / "KS"
    (kinetics_layout if convention == "kinetics" else ogm_ks_layout)(root)
    out = tmp_path / "ks.h5"
    args = ["prep", "kinetics-sounds", "--root", str(root), "--out", str(out), "--preset", "avmnist"]
    result = CliRunner().invoke(app, [*args, "--workers", "1", "--val-fraction", "0.34"])
    assert result.exit_code == 0, result.output
    info = read_info(out)
    assert info.n == 5 and info.class_names == list(KS31) and info.split_counts["test"] == 2
    assert info.shapes == {"audio/spec": (64, 63), "visual/frames": (3, 32, 32, 3)}
    assert info.attrs["source_convention"] == convention and info.attrs["num_prep_errors"] == 0


def test_kinetics_sounds_layout_errors(tmp_path: Path):
    with pytest.raises(LayoutError, match="no my_train.txt and no .csv annotations"):
        ADAPTERS.get("kinetics-sounds")().scan(tmp_path)
    (tmp_path / "labels.csv").write_text("clip,label\nc0,singing\n")
    with pytest.raises(LayoutError, match="labels.csv: missing column 'youtube_id'"):
        ADAPTERS.get("kinetics-sounds")().scan(tmp_path)
    with pytest.raises(LayoutError, match="my_train.txt: missing OGM-GE list"):
        ADAPTERS.get("kinetics-sounds")().scan(tmp_path, convention="ogm")
    with pytest.raises(LayoutError, match="convention must be one of auto, kinetics, ogm"):
        ADAPTERS.get("kinetics-sounds")().scan(tmp_path, convention="vgg")


def fsdd_wavs(count: int) -> list[Path]:
    if not FSDD.is_dir():
        pytest.skip(f"{FSDD} is not on this machine")
    return sorted(FSDD.glob("*.wav"))[:: 3000 // count][:count]


def test_manifest_over_real_fsdd_wavs_with_written_clips(tmp_path: Path):
    wavs = fsdd_wavs(20)
    rows = ["id,label,split,audio,video"]
    for n, wav in enumerate(wavs):
        write_clip(tmp_path / f"v{n}.mkv", frames(4, seed=n), fps=4)
        split = "test" if n % 5 == 0 else "train"
        rows.append(f"{wav.stem},{wav.stem.split('_')[0]},{split},{wav},v{n}.mkv")
    rows.append("ghost,3,train,/nowhere/ghost.wav,v0.mkv")
    rows.append(f"odd,eleven,train,{wavs[0]},v0.mkv")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    adapter = ADAPTERS.get("manifest")()
    items, issues = adapter.scan(tmp_path, classes=",".join(str(d) for d in range(10)))
    assert adapter.modalities == {"audio": "spectrogram", "visual": "frames"}
    assert len(items) == 20 and items[0].paths["visual"] == tmp_path / "v0.mkv"
    known = ", ".join(str(d) for d in range(10))
    assert [i.line() for i in issues] == [
        "manifest.csv row 21: /nowhere/ghost.wav: missing audio file; fix the path or drop the row",
        f"manifest.csv row 22: {wavs[0]}: unknown label 'eleven' (known: {known}); fix the row",
    ]
    preset = PRESETS.get("avmnist")
    worker_side = pickle.loads(pickle.dumps(adapter))  # what a worker process receives
    arrays = worker_side.decode(items[1], preset)
    assert arrays["visual/frames"].shape == (3, 32, 32, 3)
    wave, _ = librosa.load(wavs[1], sr=22050)  # FSDD is 8 kHz: resampled like librosa.load
    wave = np.clip(np.pad(wave, (0, max(0, 22050 - len(wave))))[:22050], -1, 1)
    mel = librosa.feature.melspectrogram(
        y=wave, sr=22050, n_fft=512, hop_length=353, n_mels=64, pad_mode="constant"
    )
    np.testing.assert_allclose(arrays["audio/spec"], np.log(mel + 1e-7), atol=1e-3)


def test_manifest_jsonl_with_images_and_relative_paths(tmp_path: Path):
    from PIL import Image

    wavs = fsdd_wavs(2)
    records = []
    for n, wav in enumerate(wavs):
        Image.fromarray(frames(1, 40, seed=n)[0]).save(tmp_path / f"i{n}.png")
        records.append({"id": f"s{n}", "label": "digit", "audio": str(wav), "image": f"i{n}.png"})
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    adapter = ADAPTERS.get("manifest")()
    items, issues = adapter.scan(tmp_path / "data.jsonl")
    assert not issues and [i.split for i in items] == [None, None]
    assert adapter.modalities == {"audio": "spectrogram", "image": "image"}
    arrays = adapter.decode(items[0], PRESETS.get("avmnist"))
    assert arrays["image/pixels"].shape == (32, 32, 3) and arrays["audio/spec"].shape == (64, 63)


def test_manifest_bad_header_and_missing_manifest(tmp_path: Path):
    (tmp_path / "m.csv").write_text("id,split,audio\na,train,a.wav\n")
    with pytest.raises(LayoutError, match=r"m\.csv: missing column 'label'"):
        ADAPTERS.get("manifest")().scan(tmp_path / "m.csv")
    (tmp_path / "n.csv").write_text("id,label\na,x\n")
    with pytest.raises(LayoutError, match="missing a modality column"):
        ADAPTERS.get("manifest")().scan(tmp_path / "n.csv")
    with pytest.raises(LayoutError, match="no manifest"):
        ADAPTERS.get("manifest")().scan(tmp_path / "empty_dir_that_is_missing")


def test_source_item_and_issue_are_plain_values():
    item = SourceItem("a", "x", None, {"audio": Path("a.wav")})
    assert item.meta == {} and PrepIssue("row 3", "a.wav", "why").line() == "row 3: a.wav: why"


@pytest.mark.slow
def test_manifest_fsdd_through_run_prep_to_a_cache(tmp_path: Path):
    """The manifest adapter under the real prep runner: FSDD wavs + written clips -> HDF5 cache."""
    from mmrebal.cache.format import read_info
    from mmrebal.prep.runner import run_prep

    wavs = fsdd_wavs(12)
    rows = ["id,label,split,audio,video"]
    for n, wav in enumerate(wavs):
        write_clip(tmp_path / f"v{n}.mkv", frames(4, seed=n), fps=4)
        rows.append(f"{wav.stem},{wav.stem.split('_')[0]},{'test' if n % 4 == 0 else 'train'},{wav},v{n}.mkv")
    (tmp_path / "broken.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not really a clip")
    rows.append(f"broken,1,train,{wavs[0]},broken.mkv")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "fsdd.h5"
    report = run_prep("manifest", tmp_path / "manifest.csv", out, preset="avmnist", workers=1)
    info = read_info(out)
    assert report.cached == 12 and info.n == 12
    assert info.modalities == {"audio": "spectrogram", "visual": "frames"}
    assert info.shapes == {"audio/spec": (64, 63), "visual/frames": (3, 32, 32, 3)}
    assert info.split_counts["test"] == 3 and info.split_counts["val"] >= 1
    assert [(i.sample_id, Path(i.path).name) for i in report.issues] == [("broken", "broken.mkv")]
    assert "corrupt or truncated" in report.issues[0].reason


@pytest.mark.parametrize("name", ["kinetics-sounds", "ave", "nvgesture", "twitter2015", "sarcasm"])
def test_a_root_that_is_not_a_folder_is_one_layout_error(name: str, tmp_path: Path) -> None:
    for root in (None, tmp_path / "missing"):
        with pytest.raises(LayoutError, match=r"^.*: not a folder; --root must "):
            ADAPTERS.get(name)().scan(root)
