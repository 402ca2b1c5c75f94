"""The prep runner and `mmrebal prep` CLI: bad input, --strict, split carving, resume after kill -9."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mmrebal.cache.writer import SampleJournal
from mmrebal.cli import app
from mmrebal.media.video import write_clip
from mmrebal.prep.adapters import SourceItem
from mmrebal.prep.runner import PrepFailed, assign_splits, errors_csv_path, manifest_hash, run_prep
from mmrebal.prep.splits import grouped_holdout, stratified_carve

SR = 22050


def good_clip(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    wave = (0.2 * rng.standard_normal(SR // 2)).astype(np.float32)
    write_clip(path, frames, 4, audio=wave, sample_rate=SR)
    return path


def write_manifest(root: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    path = root / "manifest.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "label", "video", "audio"])
        writer.writerows(rows)
    return path


def good_rows(root: Path, n: int) -> list[tuple[str, str, str, str]]:
    rows = []
    for i in range(n):
        clip = good_clip(root / f"ok{i}.mkv", i)
        rows.append((f"ok{i}", "ab"[i % 2], clip.name, clip.name))
    return rows


@pytest.fixture
def bad_dataset(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Six good rows plus one row for every kind of bad input, with the reason each must produce."""
    root = tmp_path / "raw"
    root.mkdir()
    rows = good_rows(root, 6)
    good_clip(root / "whole.mkv", 99)
    (root / "truncated.mkv").write_bytes((root / "whole.mkv").read_bytes()[:200])
    write_clip(root / "mute.mkv", np.zeros((4, 32, 32, 3), np.uint8), 4)
    sf.write(root / "empty.wav", np.zeros(0, np.float32), SR)
    rows += [
        ("trunc", "a", "truncated.mkv", "truncated.mkv"),
        ("mute", "b", "mute.mkv", "mute.mkv"),
        ("silent", "a", "ok0.mkv", "empty.wav"),
        ("gone", "b", "nowhere.mkv", "nowhere.mkv"),
        ("zebra", "zebra", "ok1.mkv", "ok1.mkv"),
    ]
    write_manifest(root, rows)
    expected = {
        "trunc": "corrupt or truncated",
        "mute": "no audio track",
        "silent": "empty audio",
        "gone": "missing audio file",
        "zebra": "unknown label 'zebra'",
    }
    return root, expected


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def manifest_cli(root: Path, out: Path, *extra: str):
    return invoke(
        "prep",
        "manifest",
        "--root",
        str(root),
        "--out",
        str(out),
        "--preset",
        "avmnist",
        "--workers",
        "1",
        "--opt",
        "classes=a,b",
        *extra,
    )


def test_bad_inputs_get_one_line_each_and_the_rest_is_cached(bad_dataset, tmp_path: Path):
    root, expected = bad_dataset
    out = tmp_path / "cache.h5"
    result = manifest_cli(root, out)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]
    assert len(lines) == len(expected)
    for sample_id, reason in expected.items():
        (line,) = [line for line in lines if reason in line]
        assert sample_id in line or "row" in line
        assert any(
            name in line for name in ("truncated.mkv", "mute.mkv", "empty.wav", "nowhere.mkv", "ok1.mkv")
        )
    with open(errors_csv_path(out), newline="") as fh:
        report = list(csv.DictReader(fh))
    assert len(report) == len(expected)
    for sample_id, reason in expected.items():
        assert sum(reason in r["reason"] for r in report) == 1, (sample_id, report)
    with h5py.File(out) as f:
        ids = sorted(i.decode() for i in f["sample_id"][:])
        assert ids == [f"ok{i}" for i in range(6)]
        assert f.attrs["num_prep_errors"] == len(expected)
        assert f["audio/spec"].shape == (6, 64, 63) and f["visual/frames"].shape == (6, 3, 32, 32, 3)
    assert not out.with_name("cache.h5.parts").exists()


def test_strict_stops_keeps_journal_and_a_rerun_resumes(tmp_path: Path):
    root = tmp_path / "raw"
    root.mkdir()
    rows = good_rows(root, 6)
    (root / "corrupt.mkv").write_bytes(b"not a video at all")
    write_manifest(root, rows + [("bad", "a", "corrupt.mkv", "corrupt.mkv")])
    out = tmp_path / "c.h5"
    result = manifest_cli(root, out, "--strict")
    assert result.exit_code == 1
    assert "--strict" in result.stderr and "corrupt.mkv" in result.stderr
    assert not out.exists()
    assert len(list(out.with_name("c.h5.parts").glob("*.part"))) == 6  # nothing decoded is lost
    assert "corrupt.mkv" in errors_csv_path(out).read_text()

    result = manifest_cli(root, out, "--val-fraction", "0.3")  # 6 samples: keep some for val
    assert result.exit_code == 0, result.output
    assert "resuming: 6 of 7" in result.stderr
    with h5py.File(out) as f:
        assert f["label"].shape == (6,)


def test_strict_refuses_a_bad_manifest_row_before_decoding(bad_dataset, tmp_path: Path):
    root, _ = bad_dataset
    out = tmp_path / "c.h5"
    result = manifest_cli(root, out, "--strict")
    assert result.exit_code == 1
    assert "nowhere.mkv" in result.stderr and "problem(s) in the source" in result.stderr
    assert not out.exists()


def test_nothing_cached_is_an_error(tmp_path: Path):
    root = tmp_path / "raw"
    root.mkdir()
    (root / "x.mkv").write_bytes(b"\x00" * 64)
    write_manifest(root, [("x", "a", "x.mkv", "x.mkv")])
    out = tmp_path / "c.h5"
    result = manifest_cli(root, out)
    assert result.exit_code == 1
    assert "no sample could be cached" in result.stderr
    assert not out.exists()


def test_unknown_option_and_dataset_are_one_line_errors(tmp_path: Path):
    result = invoke("prep", "avmnist", "--out", str(tmp_path / "x.h5"), "--opt", "colour=red")
    assert result.exit_code == 1 and "avmnist has no option colour" in result.stderr
    result = invoke("prep", "nosuch", "--out", str(tmp_path / "x.h5"))
    assert result.exit_code == 1 and "unknown dataset 'nosuch'" in result.stderr
    with pytest.raises(PrepFailed, match="size"):
        run_prep("manifest", tmp_path / "raw", tmp_path / "x.h5", size=3)


def _items(n_per_class: int, classes: int = 3, group_count: int = 0) -> list[SourceItem]:
    items = []
    for c in range(classes):
        for i in range(n_per_class):
            meta = {"group": f"g{i % group_count}"} if group_count else {}
            items.append(SourceItem(f"s{c}_{i:03d}", f"c{c}", None, {}, meta))
    return items


def test_carving_is_stratified_seeded_and_recorded():
    items = _items(20)
    names = ["c0", "c1", "c2"]
    splits, attrs = assign_splits(items, names, 0.1, 0.2, seed=3)
    for c in range(3):
        mine = [splits[i.sample_id] for i in items if i.label == f"c{c}"]
        assert mine.count("test") == 4 and mine.count("val") == 2 and mine.count("train") == 14
    assert attrs["val_split"] == {"method": "stratified", "fraction": 0.1, "seed": 4, "from": "train"}
    assert attrs["test_split"]["method"] == "stratified"
    assert assign_splits(list(reversed(items)), names, 0.1, 0.2, seed=3)[0] == splits  # order-free
    assert assign_splits(items, names, 0.1, 0.2, seed=4)[0] != splits

    given = [
        SourceItem(i.sample_id, i.label, "test" if n % 5 == 0 else "train", {}) for n, i in enumerate(items)
    ]
    splits, attrs = assign_splits(given, names, 0.1, 0.2, seed=0)
    assert attrs["test_split"] == {"method": "given by the source"}
    assert [splits[i.sample_id] == "test" for i in given] == [i.split == "test" for i in given]


def test_grouped_test_split_keeps_each_group_on_one_side():
    items = _items(12, group_count=6)
    splits, attrs = assign_splits(items, ["c0", "c1", "c2"], 0.1, 0.25, seed=0)
    assert attrs["test_split"]["method"] == "grouped"
    test_groups = {i.meta["group"] for i in items if splits[i.sample_id] == "test"}
    other_groups = {i.meta["group"] for i in items if splits[i.sample_id] != "test"}
    assert test_groups and not test_groups & other_groups
    held = grouped_holdout(["a"] * 5 + ["b"] * 5 + ["c"] * 10, 0.3, seed=1)
    assert 0 < len(held) < 3
    with pytest.raises(ValueError, match="two groups"):
        grouped_holdout(["a", "a"], 0.5, 0)


def test_stratified_carve_keeps_a_sample_of_every_class_in_train():
    chosen = stratified_carve(["a", "b", "c"], [0, 0, 1], 0.9, seed=0)
    assert "c" not in chosen and len(chosen & {"a", "b"}) == 1
    with pytest.raises(ValueError):
        stratified_carve(["a"], [0], 1.0, 0)


def test_manifest_hash_follows_the_files_and_resets_the_journal(tmp_path: Path):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(100, np.float32), SR)
    items = [SourceItem("a", "x", None, {"audio": wav})]
    first = manifest_hash(items, {}, synthetic=False)
    assert manifest_hash(items, {}, synthetic=False) == first
    assert manifest_hash(items, {"classes": "x"}, synthetic=False) != first
    with_text = [SourceItem("a", "x", None, {"audio": wav}, {"text": "hello"})]
    assert manifest_hash(with_text, {}, synthetic=False) != first
    out = tmp_path / "c.h5"
    SampleJournal(out, first).write("a", {"audio/spec": np.zeros(3, np.float32)})
    sf.write(wav, np.zeros(200, np.float32), SR)
    second = manifest_hash(items, {}, synthetic=False)
    assert second != first
    journal = SampleJournal(out, second)
    assert journal.reset_reason and not journal.done("a")


# Big enough that the tests below catch the prep mid-way: a 2-worker build makes ~120 clips/s.
INTERRUPTED_SIZE = 120


def _prep_subprocess(out: Path, workers: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mmrebal", "prep", "avmnist", "--size", str(INTERRUPTED_SIZE)]
    cmd += ["--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [*cmd, "--workers", str(workers)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


@pytest.mark.slow
def test_resume_after_kill_9_matches_an_uninterrupted_build(tmp_path: Path):
    killed = tmp_path / "killed.h5"
    proc = _prep_subprocess(killed, workers=1)
    parts = killed.with_name("killed.h5.parts")
    deadline = time.monotonic() + 120
    while len(list(parts.glob("*.part"))) < 12:
        assert proc.poll() is None, "prep finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not killed.exists()
    done_before = len(list(parts.glob("*.part")))
    assert 12 <= done_before < INTERRUPTED_SIZE

    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmrebal",
            "prep",
            "avmnist",
            "--size",
            str(INTERRUPTED_SIZE),
            "--out",
            str(killed),
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {done_before} of {INTERRUPTED_SIZE}" in resumed.stderr
    assert not parts.exists() and not killed.with_name("killed.h5.raw").exists()

    whole = tmp_path / "whole.h5"
    straight = _prep_subprocess(whole, workers=2)
    assert straight.wait() == 0, straight.stderr.read() if straight.stderr else ""
    with h5py.File(killed) as a, h5py.File(whole) as b:
        ids = [i.decode() for i in a["sample_id"][:]]
        assert len(ids) == len(set(ids)) == INTERRUPTED_SIZE
        for key in ("sample_id", "label", "split", "class_names", "audio/spec", "visual/frames"):
            np.testing.assert_array_equal(a[key][:], b[key][:], err_msg=key)
        assert a.attrs["source_sha256"] == b.attrs["source_sha256"]


@pytest.mark.slow
def test_ctrl_c_stops_the_pool_cleanly_and_a_rerun_completes(tmp_path: Path):
    out = tmp_path / "c.h5"
    cmd = [
        sys.executable,
        "-m",
        "mmrebal",
        "prep",
        "avmnist",
        "--size",
        str(INTERRUPTED_SIZE),
        "--workers",
        "2",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    parts = out.with_name("c.h5.parts")
    deadline = time.monotonic() + 120
    while len(list(parts.glob("*.part"))) < 8:
        assert proc.poll() is None, "prep finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal signals the whole foreground group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: decoded samples are kept" in err and "Traceback" not in err
    assert not out.exists()

    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "resuming:" in again.stderr
    with h5py.File(out) as f:
        ids = [i.decode() for i in f["sample_id"][:]]
    assert sorted(ids) == [f"avmnist_{i:05d}" for i in range(INTERRUPTED_SIZE)]


def test_compressed_layout_reads_the_same_arrays(tmp_path: Path):
    root = tmp_path / "raw"
    root.mkdir()
    write_manifest(root, good_rows(root, 6))  # enough rows for a non-empty val and test split
    raw = manifest_cli(root, tmp_path / "raw.h5")
    assert raw.exit_code == 0, raw.output
    result = manifest_cli(root, tmp_path / "lzf.h5", "--compression", "lzf")
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "raw.h5") as raw, h5py.File(tmp_path / "lzf.h5") as lzf:
        for key in ("audio/spec", "visual/frames"):
            assert raw[key].compression is None and lzf[key].compression == "lzf"
            np.testing.assert_array_equal(raw[key][:], lzf[key][:])
    result = manifest_cli(root, tmp_path / "x.h5", "--compression", "zstd")
    assert result.exit_code == 1 and "--compression zstd: choose none or one of lzf, gzip" in result.stderr
