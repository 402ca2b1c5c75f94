"""Writes that are atomic and fail with one line: the file system's refusals are user errors.

A full disk, a read-only mount or a folder without permission is not a bug in mmrebal, so every
write goes through :func:`atomic_write_bytes` or :func:`writing`, which turn ``OSError`` into a
:class:`StorageError` naming the path, the reason and the free space, and leave no temp file.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_ADVICE = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space or write elsewhere",
    errno.EFBIG: "write to a file system that takes larger files",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EACCES: "no permission; write elsewhere or fix the folder's permissions",
    errno.EPERM: "no permission; write elsewhere or fix the folder's permissions",
}


class StorageError(RuntimeError):
    """A write the file system refused; the message is one line that says what to do."""


def human_size(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**17 else f"{n / 2**10:.0f} KiB"


def free_space(path: Path) -> str:
    """Free space on the file system holding ``path`` (its nearest existing parent), e.g. ``"12.0 MiB"``."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return human_size(shutil.disk_usage(probe).free)
    except OSError:
        return "unknown"


def storage_error(path: Path, exc: OSError, size: int | None = None) -> StorageError:
    """The one line for a refused write of ``path`` (``size`` bytes, when known)."""
    reason = exc.strerror or str(exc)
    advice = _ADVICE.get(exc.errno or 0, "check the disk and the path")
    need = f"{human_size(size)} needed, " if size is not None else ""
    return StorageError(f"cannot write {path}: {reason} ({need}{free_space(path)} free there); {advice}")


def is_storage_error(exc: BaseException) -> bool:
    """True for the ``OSError`` kinds that the file system raises for a refused write."""
    return isinstance(exc, OSError) and exc.errno in _ADVICE


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a refused write inside the block into a one-line :class:`StorageError` about ``path``."""
    try:
        yield
    except OSError as exc:
        if is_storage_error(exc):
            raise storage_error(path, exc) from None
        raise


def temp_path(path: Path) -> Path:
    """The hidden temp name beside ``path`` that a write of this process uses before its rename."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def remove_stale_temps(path: Path) -> None:
    """Remove temp files beside ``path`` left by killed writers (call only while holding its lock)."""
    for stale in Path(path).parent.glob(f".{Path(path).name}.tmp-*"):
        stale.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: Path, size: int | None = None, durable: bool = True) -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write; it is fsynced (unless not ``durable``) and renamed
    onto ``path`` when the block succeeds, removed when it fails, and a refused write becomes a
    :class:`StorageError` (the free space it names is measured after the temp file is gone).

    Without the fsync a killed process still leaves the whole file or none (the kernel writes it
    back), but a power loss may leave it torn: only for files whose reader checks them."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if is_storage_error(exc):
            raise storage_error(path, exc, size) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, payload: bytes, durable: bool = True) -> None:
    """Write ``payload`` so readers see either the old file or the whole new one, never a torn one
    (after a power loss too unless not ``durable``: see :func:`atomic_path`)."""
    with atomic_path(path, len(payload), durable) as tmp:
        tmp.write_bytes(payload)


class Busy(RuntimeError):
    """Another live process holds the lock; the message names its pid."""


class ExclusiveLock:
    """An advisory ``flock`` on ``path`` held until :meth:`release` or the process ends (the kernel
    drops it on any exit, ``kill -9`` included, so a dead holder never blocks the next run).

    The file keeps the holder's pid and purpose so that a refused process can name it; the file
    itself stays (removing it would let two processes lock two different inodes).
    """

    def __init__(self, path: Path, purpose: str) -> None:
        import fcntl

        self.path = Path(path)
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 200, 0).decode(errors="replace").strip() or "another process"
            self.release()
            raise Busy(holder) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"pid {os.getpid()} ({purpose})\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
