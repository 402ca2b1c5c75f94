"""The cremad, kinetics-sounds and manifest adapters on real small layouts written here."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from mmrebal.media import MediaError
from mmrebal.media.video import write_clip
from mmrebal.prep.adapters import ADAPTERS, LayoutError, PrepIssue, SourceItem, load_builtin
from mmrebal.prep.presets import PRESETS

# The Free Spoken Digit Dataset lives beside the repo (never copied into it); MMREBAL_FSDD overrides.
_SHARED_FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"
FSDD = Path(os.environ.get("MMREBAL_FSDD", _SHARED_FSDD))
EMOTIONS = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")


@pytest.fixture(scope="module", autouse=True)
def _adapters() -> None:
    load_builtin()


def frames(count: int = 6, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (count, size, size, 3), dtype=np.uint8)


def voice(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    return (0.2 * np.random.default_rng(seed).standard_normal(round(seconds * rate))).astype(np.float32)


def cremad_layout(root: Path, per_class: int = 2) -> list[str]:
    (root / "AudioWAV").mkdir(parents=True)
    (root / "VideoFlash").mkdir()
    names = []
    for actor in range(per_class):
        for emotion in EMOTIONS:
            name = f"10{actor:02d}_DFA_{emotion}_XX"
            sf.write(root / "AudioWAV" / f"{name}.wav", voice(0.4, 16000, actor), 16000)
            write_clip(root / "VideoFlash" / f"{name}.flv", frames(4, seed=actor), fps=4)
            names.append(name)
    return names


def test_cremad_scan_labels_seeded_split_and_issues(tmp_path: Path):
    names = cremad_layout(tmp_path)
    sf.write(tmp_path / "AudioWAV" / "notes.wav", voice(0.1, 16000), 16000)
    sf.write(tmp_path / "AudioWAV" / "1099_DFA_ANG_XX.wav", voice(0.1, 16000), 16000)
    adapter = ADAPTERS.get("cremad")()
    items, issues = adapter.scan(tmp_path)
    assert sorted(i.sample_id for i in items) == sorted(names)
    assert {i.sample_id: i.label for i in items}["1001_DFA_SAD_XX"] == "SAD"
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
    (tmp_path / "train.csv").write_text("".join(f"{n},{n.split('_')[2]}\n" for n in names[:4]))
    (tmp_path / "test.csv").write_text("".join(f"{n},{n.split('_')[2]}\n" for n in names[4:5]))
    adapter = ADAPTERS.get("cremad")()
    items, issues = adapter.scan(tmp_path)
    assert {i.sample_id: i.split for i in items} == {**dict.fromkeys(names[:4], "train"), names[4]: "test"}
    assert [issue.sample_id for issue in issues] == [names[5]]
    assert "not listed" in issues[0].reason
    arrays = adapter.decode(items[0], PRESETS.get("ogm"))
    assert arrays["audio/spec"].shape == (257, 188) and arrays["audio/spec"].dtype == np.float32
    assert arrays["visual/frames"].shape == (1, 224, 224, 3) and arrays["visual/frames"].dtype == np.uint8


def test_cremad_layout_errors(tmp_path: Path):
    with pytest.raises(LayoutError, match="AudioWAV: missing folder"):
        ADAPTERS.get("cremad")().scan(tmp_path)
    with pytest.raises(LayoutError, match="needs --root"):
        ADAPTERS.get("cremad")().scan(None)


def test_kinetics_sounds_scan_decode_and_bad_rows(tmp_path: Path):
    clips = tmp_path / "clips" / "train"
    clips.mkdir(parents=True)
    for n in range(3):
        write_clip(
            clips / f"c{n}.mp4", frames(10, seed=n), fps=5, audio=voice(2.0, 16000, n), sample_rate=16000
        )
    write_clip(clips / "mute.mp4", frames(10), fps=5)
    (tmp_path / "labels.csv").write_text(
        "clip_id,label,split\nc0,playing drums,train\nc1.mp4,singing,test\nc2,singing,\n"
        "gone,singing,train\nc0,singing,train\nmute,singing,train\nc3,singing,holdout\n"
    )
    adapter = ADAPTERS.get("kinetics-sounds")()
    items, issues = adapter.scan(tmp_path)
    assert [(i.sample_id, i.split) for i in items] == [
        ("c0", "train"),
        ("c1", "test"),
        ("c2", None),
        ("mute", "train"),
    ]
    assert items[0].paths == {"audio": clips / "c0.mp4", "visual": clips / "c0.mp4"}
    assert adapter.class_names(items) == ["playing drums", "singing"]
    lines = [issue.line() for issue in issues]
    assert lines[0].startswith("labels.csv row 4: ") and "gone.mp4: missing audio file" in lines[0]
    assert "row 5" in lines[1] and "duplicate id 'c0'" in lines[1]
    assert "row 7" in lines[2] and "unknown split 'holdout'" in lines[2]
    arrays = adapter.decode(items[0], PRESETS.get("bss-ks"))
    assert arrays["audio/spec"].shape == (257, 1003)
    assert arrays["visual/frames"].shape == (3, 224, 224, 3)
    with pytest.raises(MediaError, match=r"mute\.mp4: the clip has no audio track"):
        adapter.decode(items[3], PRESETS.get("bss-ks"))


def test_kinetics_sounds_layout_errors(tmp_path: Path):
    with pytest.raises(LayoutError, match="no .csv files"):
        ADAPTERS.get("kinetics-sounds")().scan(tmp_path)
    (tmp_path / "labels.csv").write_text("clip,label\nc0,x\n")
    with pytest.raises(LayoutError, match="labels.csv: missing column 'clip_id'"):
        ADAPTERS.get("kinetics-sounds")().scan(tmp_path)


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
    load_builtin()
    for root in (None, tmp_path / "missing"):
        with pytest.raises(LayoutError, match=r"^.*: not a folder; --root must "):
            ADAPTERS.get(name)().scan(root)
