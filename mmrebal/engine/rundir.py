"""The run directory's rules: one process at a time, nothing finished replaced unasked, honest resume.

Layout: ``config.yaml``, ``summary.json``, ``steps/metrics/samples.parquet``, ``checkpoints/{last,best}.pt``
and ``.lock`` (an advisory lock held by the training process for its lifetime, naming its pid).

* A directory holding a checkpoint or a summary is a run: a new ``train`` into it is refused unless
  ``--resume`` continues it or ``--overwrite`` replaces it.
* ``--resume`` compares the options given with the ones the checkpoint was trained with. Those that
  cannot change mid-run (model, sampler, method, data, seed, optimiser, batch size ...) refuse with one
  line; ``lr``, ``scheduler``, ``step_size``, ``gamma`` and ``epochs`` may change. A changed ``lr`` or
  schedule is applied for real: every parameter group restarts at ``--lr`` and the schedule restarts
  counting at the resume epoch. Each change is recorded with the epoch it took effect at (``changes``
  in the checkpoints, ``config.yaml`` and ``summary.json``).
* ``best.pt`` is written before ``last.pt``, so a crash between the two leaves a ``last.pt`` whose
  record of the best epoch matches ``best.pt`` or is older (the redone epoch rewrites both);
  :func:`reconcile_best` repairs the opposite order that older versions could leave.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

from mmrebal.engine.checkpoint import CheckpointError, load_checkpoint
from mmrebal.storage import Busy, ExclusiveLock, atomic_write_bytes, writing

TRACE_FILES = ("steps.parquet", "metrics.parquet", "samples.parquet")
MUTABLE = ("lr", "scheduler", "step_size", "gamma", "epochs")
SCHEDULE = ("lr", "scheduler", "step_size", "gamma")
# Options that change how a run is executed or reported, not what it computes.
FREE = ("out", "resume", "preset", "device", "workers", "reader", "preload", "eval_batch_size",
        "test_each_epoch")  # fmt: skip


class RunDirError(RuntimeError):
    """A run directory that cannot be used as asked; the message is one line that says what to do."""


def checkpoint_path(run_dir: Path, which: str) -> Path:
    return Path(run_dir) / "checkpoints" / f"{which}.pt"


def lock(run_dir: Path) -> ExclusiveLock:
    """Hold ``RUN_DIR/.lock`` for this process, or refuse naming the process that holds it."""
    try:
        held = ExclusiveLock(Path(run_dir) / ".lock", "mmrebal train")
    except Busy as exc:
        raise RunDirError(
            f"{run_dir} is in use by {exc}; wait for it to finish or choose another --out"
        ) from None
    remove_leftovers(run_dir)
    return held


def remove_leftovers(run_dir: Path) -> None:
    """Temp files of killed writers (``.last.pt.tmp-<pid>`` ...); safe only while holding the lock."""
    for folder in (Path(run_dir), Path(run_dir) / "checkpoints"):
        for stale in folder.glob(".*.tmp-*"):
            stale.unlink(missing_ok=True)


def existing_run(run_dir: Path) -> str | None:
    """``"finished"``, ``"unfinished"`` or None (nothing that a new run would lose)."""
    run_dir = Path(run_dir)
    if (run_dir / "summary.json").exists():
        return "finished"
    if any(checkpoint_path(run_dir, w).exists() for w in ("last", "best")):
        return "unfinished"
    return None


def check_fresh_start(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start over in a directory that holds a run, unless ``--overwrite`` says so."""
    kind = existing_run(run_dir)
    if kind is None or overwrite or (resume and kind == "unfinished"):  # no last.pt: redone from epoch 0
        return
    if resume:  # a summary without checkpoints: nothing to continue from, and something to lose
        raise RunDirError(
            f"{run_dir} holds a finished run but no checkpoints/last.pt to resume from; "
            "pass --overwrite to replace it or choose another --out"
        )
    raise RunDirError(
        f"{run_dir} holds a {kind} run; pass --resume to continue it or --overwrite to replace it, "
        "or choose another --out"
    )


def clear(run_dir: Path) -> None:
    """Remove what a fresh run rewrites (summary, traces, checkpoints); the lock stays."""
    run_dir = Path(run_dir)
    with writing(run_dir):
        (run_dir / "summary.json").unlink(missing_ok=True)
        for name in TRACE_FILES:
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def _same_cache(old: Any, new: Any) -> bool:
    if old == new:
        return True
    try:
        return os.path.samefile(old, new)
    except (OSError, TypeError):
        return False


def resume_changes(
    saved: dict[str, Any], given: dict[str, Any], completed: int
) -> dict[str, tuple[Any, Any]]:
    """The options that differ between the checkpoint's config and the given one, as name ->
    (old, new); refuses (one line) any that cannot change mid-run, or fewer epochs than are done."""
    frozen, changed = [], {}
    for name, new in given.items():
        old = saved.get(name)
        if name in FREE or old == new or (name == "cache" and _same_cache(old, new)):
            continue
        if name in MUTABLE:
            changed[name] = (old, new)
        else:
            frozen.append(f"{name} {old!r} -> {new!r}")
    if frozen:
        raise RunDirError(
            f"--resume: {'; '.join(frozen)} cannot change mid-run (only {', '.join(MUTABLE)} can); "
            "drop those options to continue the run, or start a new one with another --out or --overwrite"
        )
    if given["epochs"] < completed:
        raise RunDirError(
            f"--resume --epochs {given['epochs']}: the run already completed {completed} epochs; "
            f"pass --epochs {completed} or more"
        )
    return changed


def change_records(changed: dict[str, tuple[Any, Any]], epoch: int) -> list[dict[str, Any]]:
    """One record per changed option: the first epoch that ran with the new value."""
    return [{"epoch": epoch, "option": k, "from": old, "to": new} for k, (old, new) in changed.items()]


def describe(records: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['option']} {r['from']} -> {r['to']}" for r in records)


def reconcile_best(run_dir: Path, run: dict[str, Any], epochs: int) -> str | None:
    """Make ``best.pt`` agree with ``last.pt``'s record (``run``: its RunState as a dict, updated in place).

    Agreeing, or ``best.pt`` ahead of ``last.pt`` (a crash between the two writes: the redone epoch
    rewrites both): nothing to do. ``best.pt`` missing or stale while ``last.pt`` records its own epoch
    as the best (the order older versions wrote in): ``last.pt`` is copied. Anything else (``best.pt``
    deleted): selection restarts with the next epoch, or takes ``last.pt`` when none is left.
    Returns a note for the user, or None.
    """
    last, best = checkpoint_path(run_dir, "last"), checkpoint_path(run_dir, "best")
    try:
        best_epoch = load_checkpoint(best)["run"]["epoch"] if best.exists() else None
    except CheckpointError:
        best_epoch = None
    if best_epoch == run["best_epoch"] or (best_epoch is not None and best_epoch > run["epoch"]):
        return None
    if run["best_epoch"] == run["epoch"] or run["epoch"] + 1 >= epochs:
        atomic_write_bytes(best, last.read_bytes())
        run["best_epoch"] = run["epoch"]
        return f"{best} was missing or stale; it is now {last} (epoch {run['epoch']})"
    run.update(best_epoch=-1, best_acc=-math.inf, best_loss=math.inf)
    return f"{best} was missing or stale; the epochs from {run['epoch'] + 1} on select the best again"
