"""Prep's guards: one prep per output, workers that die with their parent, leftovers of killed runs
removed, a cache never written inside its own source, and no cache without a sample in every split."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _lock_holder import lock_held_elsewhere
from test_prep_runner import good_rows, manifest_cli, write_manifest


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stat(pid: int) -> list[str] | None:
    """State, parent pid, ... of a process from /proc (no psutil needed), None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def children(pid: int) -> list[int]:
    return [
        int(p.name) for p in Path("/proc").glob("[0-9]*") if (f := _stat(int(p.name))) and int(f[1]) == pid
    ]


def test_a_second_prep_into_the_same_out_is_refused_and_the_cache_is_untouched(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    root.mkdir()
    write_manifest(root, good_rows(root, 10))
    out = tmp_path / "q.h5"
    assert manifest_cli(root, out).exit_code == 0
    before = digest(out)
    statement = "from mmrebal.prep.runner import lock_output; lock_output(sys.argv[1])"
    with lock_held_elsewhere(statement, out) as pid:
        result = manifest_cli(root, out)
        assert result.exit_code == 1
        assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
            f"error: {out} is being written by pid {pid} (mmrebal prep); wait for it to finish "
            "or choose another --out"
        ]
        assert digest(out) == before and not out.with_name("q.h5.parts").exists()
    assert manifest_cli(root, out).exit_code == 0  # a killed holder blocks nobody


@pytest.mark.slow
def test_killing_the_prep_stops_its_workers_and_the_next_run_removes_the_leftovers(tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    cmd = [sys.executable, "-m", "mmrebal", "prep", "avmnist", "--size", "120", "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    parts = out.with_name("c.h5.parts")
    deadline = time.monotonic() + 120
    try:
        while len(list(parts.glob("*.part"))) < 4:
            assert proc.poll() is None and time.monotonic() < deadline, "prep ended before the kill"
            time.sleep(0.05)
        workers = children(proc.pid)
        assert len(workers) >= 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 15
        while any(alive(w) for w in workers):
            assert time.monotonic() < deadline, f"workers {workers} outlived their parent"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    # what a kill during assembly and during a journal write leave behind
    (tmp_path / ".c.h5.tmp-99999").write_bytes(b"\0" * 4096)
    (parts / ".0123456789abcdef.part.tmp-99999").write_bytes(b"\0" * 64)
    again = subprocess.run([*cmd, "--workers", "1"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert out.exists() and not list(tmp_path.glob(".c.h5.tmp-*")) and not parts.exists()


def test_a_cache_inside_its_own_source_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "KS"
    root.mkdir()
    write_manifest(root, good_rows(root, 2))
    before = sorted(p.name for p in root.iterdir())
    result = manifest_cli(root, root / "ks.h5")
    assert result.exit_code == 1
    assert f"error: --out {root / 'ks.h5'} is inside --root {root}; write the cache outside" in result.stderr
    assert sorted(p.name for p in root.iterdir()) == before  # not even a lock file


def test_a_header_only_manifest_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    root.mkdir()
    write_manifest(root, [])
    out = tmp_path / "c.h5"
    result = manifest_cli(root, out)
    assert result.exit_code == 1
    assert f"error: {root}: the source lists no sample; nothing was written" in result.stderr
    assert "None" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["raw"]


def test_a_cache_with_an_empty_split_is_refused_and_the_journal_kept(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    root.mkdir()
    rows = good_rows(root, 5)
    write_manifest(root, rows[:4])
    out = tmp_path / "c.h5"
    result = manifest_cli(root, out)  # 2 per class: one each for test and train, none left for val
    assert result.exit_code == 1
    assert f"error: {out}: the val split would be empty (train 2, val 0, test 2 of 4" in result.stderr
    assert not out.exists() and len(list(out.with_name("c.h5.parts").glob("*.part"))) == 4
    write_manifest(root, rows)
    again = manifest_cli(root, out)
    assert again.exit_code == 0, again.output


def faststart_copy(src: Path, dst: Path) -> Path:
    """``src`` remuxed with the index (moov) first, as web downloads are: a cut copy still opens."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w", format="mp4", options={"movflags": "faststart"}) as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for packet in i.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                o.mux(packet)
    return dst


def test_truncated_media_and_too_short_audio_are_listed_not_cached(tmp_path: Path) -> None:
    import csv

    import numpy as np
    import soundfile as sf

    from mmrebal.media.video import write_clip
    from mmrebal.prep.runner import errors_csv_path

    root = tmp_path / "raw"
    root.mkdir()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8)
    write_clip(
        tmp_path / "whole.mp4", frames, 10, audio=0.2 * rng.standard_normal(22050 * 4), sample_rate=22050
    )
    whole = faststart_copy(tmp_path / "whole.mp4", root / "whole.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(whole[: len(whole) // 2])  # opens and decodes 2 s without an error
    sf.write(root / "blip.wav", 0.2 * rng.standard_normal(220), 22050)  # 10 ms
    rows = good_rows(root, 6)
    rows += [("cut", "a", "cut.mp4", "cut.mp4"), ("blip", "b", "ok0.mkv", "blip.wav")]
    write_manifest(root, rows)
    out = tmp_path / "c.h5"
    result = manifest_cli(root, out)
    assert result.exit_code == 0, result.output
    with open(errors_csv_path(out), newline="") as fh:
        listed = {r["sample_id"]: r["reason"] for r in csv.DictReader(fh)}
    assert set(listed) == {"cut", "blip"}
    assert listed["cut"].startswith("truncated ") and "s of the 4.0" in listed["cut"]
    assert listed["blip"].startswith("audio too short (10 ms; the preset needs at least 0.1 s)")
