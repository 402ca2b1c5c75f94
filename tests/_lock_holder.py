"""Another process that holds a lock, for the tests of what a second process is told."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def lock_held_elsewhere(statement: str, path: Path) -> Iterator[int]:
    """Run ``statement`` (which locks ``sys.argv[1]`` = ``path``) in a child process and yield its pid
    while it holds the lock; ``kill -9`` it afterwards (the kernel then drops the lock)."""
    code = f"import sys\n{statement}\nprint('locked', flush=True)\nsys.stdin.read()"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
