"""Starting a run in its directory: lock it, then either continue from ``last.pt`` exactly where it
was written (with the options that may change applied, see :mod:`mmrebal.engine.rundir`) or start
clean, refusing to replace a finished run unasked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mmrebal.engine import distributed, rundir
from mmrebal.engine.build import build_scheduler
from mmrebal.engine.checkpoint import load_run_checkpoint, set_rng_state
from mmrebal.engine.config import config_yaml
from mmrebal.engine.records import RunState
from mmrebal.storage import atomic_write_bytes

if TYPE_CHECKING:
    from mmrebal.engine.trainer import Trainer


def restore(trainer: Trainer, path: Path) -> str | None:
    """Continue from a checkpoint exactly where it was written (end of its epoch), with the options
    that may change applied; returns a note on what was repaired or changed."""
    ckpt, saved = load_run_checkpoint(path)  # CPU first: RNG states must stay host tensors
    completed = ckpt["run"]["epoch"] + 1
    changed = rundir.resume_changes(saved.to_dict(), trainer.config.to_dict(), completed)
    records = rundir.change_records(changed, completed)
    trainer.changes = [*ckpt.get("changes", []), *records]
    trainer.model.load_state_dict(ckpt["model"])
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    if changed.keys() & set(rundir.SCHEDULE):  # --lr/--scheduler given anew: applied from here on
        for group in trainer.optimizer.param_groups:
            group["lr"] = group["initial_lr"] = trainer.config.lr
        trainer.scheduler = build_scheduler(trainer.optimizer, trainer.config)
    elif trainer.scheduler is not None:
        trainer.scheduler.load_state_dict(ckpt["scheduler"])
    trainer.sampler.load_state_dict(ckpt["sampler"])
    trainer.method.load_state_dict(ckpt["method"])
    for hook in trainer.hooks:
        if hook.key:
            hook.load_state_dict(ckpt[hook.key])
    repaired = trainer.dist.is_main and rundir.reconcile_best(
        trainer.run_dir, ckpt["run"], trainer.config.epochs
    )
    trainer.state = RunState(**ckpt["run"])
    set_rng_state(ckpt["rng"])
    trainer.traces.resume(trainer.state.epoch)
    notes = [repaired, records and f"from epoch {completed}: {rundir.describe(records)}"]
    return "; ".join(n for n in notes if n) or None


def prepare_run_dir(trainer: Trainer) -> None:
    """Lock the run dir; resume from ``last.pt`` when asked; otherwise start clean (see :mod:`rundir`);
    then write ``config.yaml`` and print the run's warnings."""
    if trainer.dist.is_main:
        trainer.lock = rundir.lock(trainer.run_dir)
    last = trainer.checkpoint_path("last")
    if trainer.config.resume and last.exists():
        note = restore(trainer, last)
        if trainer.dist.is_main:
            done = trainer.state.epoch + 1  # the terminal counts epochs from 1
            line = f"resuming from {last} after epoch {done}"
            trainer.console.print(line, highlight=False, soft_wrap=True)
            if note:
                trainer.console.print(note, highlight=False, soft_wrap=True)
    else:
        rundir.check_fresh_start(trainer.run_dir, trainer.config.resume, trainer.overwrite)
        if trainer.dist.is_main:
            if trainer.config.resume:
                trainer.console.print(f"no checkpoint at {last}; starting from scratch", highlight=False)
            elif rundir.existing_run(trainer.run_dir):
                trainer.console.print(
                    f"{trainer.run_dir}: replacing the earlier run (--overwrite)", soft_wrap=True
                )
            rundir.clear(trainer.run_dir)
    if trainer.dist.is_main:
        atomic_write_bytes(
            trainer.run_dir / "config.yaml",
            config_yaml(trainer.config, trainer.info.attrs, trainer.changes).encode(),
        )
        for line in trainer.warnings:
            trainer.console.print(f"warning: {line}", highlight=False, soft_wrap=True)
    distributed.barrier(trainer.dist)
