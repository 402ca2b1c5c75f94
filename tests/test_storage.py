"""A full or read-only disk under prep and train: one line naming the path and the free space, no
traceback, no segfault, and nothing lost (the run resumes and the prep re-runs once there is room).

The disks are real tmpfs mounts, which needs root; elsewhere these tests skip and say so.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _tiny_cache import build_tiny_cache
from test_prep_runner import good_rows, manifest_cli, write_manifest
from typer.testing import CliRunner

from mmrebal.cli import app
from mmrebal.storage import StorageError, atomic_write_bytes

TRAIN = ["--epochs", "2", "--batch-size", "12", "--feature-dim", "16", "--device", "cpu"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``small_disk(kib, read_only=False)`` -> a fresh tmpfs of that size; remounted by ``resize``."""
    mounted: list[Path] = []

    def mount(kib: int, read_only: bool = False) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        options = f"size={kib}k" + (",ro" if read_only else "")
        try:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True
            )
        except FileNotFoundError:
            pytest.skip("no mount command here to mount a small tmpfs")
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
        mounted.append(point)
        return point

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def resize(point: Path, kib: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={kib}k", str(point)], check=True)


def one_error(output: str) -> str:
    assert "Traceback" not in output, output
    (line,) = [line for line in output.splitlines() if line.startswith("error:")]
    return line


def test_train_on_a_full_disk_says_one_line_and_resumes_once_there_is_room(
    small_disk: Callable[..., Path], tmp_path: Path
) -> None:
    cache = build_tiny_cache(tmp_path / "tiny.h5", n=60, num_classes=3, seed=1)
    disk = small_disk(16 * 1024)  # room for one checkpoint of this model (9 MiB), not two
    out = disk / "run"
    args = ["train", "--cache", str(cache), "--out", str(out), *TRAIN]
    full = CliRunner().invoke(app, args)
    assert full.exit_code == 1
    line = one_error(full.output)
    assert line.startswith(f"error: cannot write {out}/checkpoints/") and "No space left on device" in line
    assert "MiB needed" in line and "free there" in line
    assert not list(out.rglob(".*.tmp-*"))  # the torn temp file is gone

    resize(disk, 64 * 1024)
    resumed = CliRunner().invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert (out / "summary.json").exists()


def test_prep_on_a_full_disk_says_one_line_while_decoding_and_assembling(
    small_disk: Callable[..., Path], tmp_path: Path
) -> None:
    root = tmp_path / "raw"
    root.mkdir()
    write_manifest(root, good_rows(root, 12))
    disk = small_disk(160)  # ~6 journal samples of 25 KiB
    out = disk / "c.h5"
    full = manifest_cli(root, out)
    assert full.exit_code == 1
    line = one_error(full.stderr)
    assert f"cannot write {disk}/c.h5.parts/" in line and "No space left on device" in line

    resize(disk, 420)  # the journal fits now, the assembled cache beside it does not
    again = manifest_cli(root, out)
    assert again.exit_code == 1
    line = one_error(again.stderr)
    assert line.startswith(f"error: cannot write {out}: it needs about") and "free there" in line
    assert not out.exists() and len(list(disk.glob("c.h5.parts/*.part"))) == 12  # nothing decoded is lost

    resize(disk, 2048)
    assert manifest_cli(root, out).exit_code == 0


def test_a_disk_that_fills_during_hdf5_assembly_does_not_crash_hdf5(
    small_disk: Callable[..., Path], tmp_path: Path
) -> None:
    """The free-space check is bypassed, so HDF5 itself meets the full disk (it used to segfault)."""
    disk = small_disk(3072)  # the journal (600 files of one 4 KiB page) fits, the cache beside it not
    script = (
        "import sys; sys.path.insert(0, sys.argv[2]); import mmrebal.cache.writer as w\n"
        "from _tiny_cache import build_tiny_cache\n"
        "w.check_free_space = lambda *a: None\n"
        "try:\n    build_tiny_cache(sys.argv[1], n=600)\n"
        "except w.StorageError as e:\n    print(e); sys.exit(3)\n"
    )
    out = disk / "a.h5"
    done = subprocess.run(
        [sys.executable, "-c", script, str(out), str(Path(__file__).parent)], capture_output=True, text=True
    )
    assert done.returncode == 3, (done.returncode, done.stderr[-2000:])  # not -11 (SIGSEGV)
    assert done.stdout.startswith(f"cannot write {out}: No space left on device")
    assert "Traceback" not in done.stderr and not out.exists() and not list(disk.glob(".a.h5.tmp-*"))


def test_a_read_only_disk_is_one_line_for_prep_and_train(
    small_disk: Callable[..., Path], tmp_path: Path
) -> None:
    cache = build_tiny_cache(tmp_path / "tiny.h5", n=60, num_classes=3, seed=1)
    disk = small_disk(1024, read_only=True)
    result = CliRunner().invoke(app, ["train", "--cache", str(cache), "--out", str(disk / "run"), *TRAIN])
    assert result.exit_code == 1
    assert "Read-only file system" in one_error(result.output) and "write elsewhere" in result.output
    root = tmp_path / "raw"
    root.mkdir()
    write_manifest(root, good_rows(root, 2))
    result = manifest_cli(root, disk / "c.h5")
    assert result.exit_code == 1 and "Read-only file system" in one_error(result.stderr)


def test_atomic_write_leaves_the_old_file_and_no_temp_when_refused(tmp_path: Path, monkeypatch) -> None:
    """Without a small disk: the refusal is simulated at the write, the rest is the real code path."""
    target = tmp_path / "f.json"
    target.write_bytes(b"old")

    def refuse(self, data):  # noqa: ANN001
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", refuse)
    with pytest.raises(StorageError, match=r"cannot write .*f\.json: No space left on device \("):
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and not list(tmp_path.glob(".f.json.tmp-*"))
