"""The end of a run: the checkpoint selected on validation is loaded, val and TEST are scored with it
(TEST only here, never for selection), the traces mark it ``selected``, and ``summary.json`` (whose
presence marks a finished run) is written atomically; rank 0 prints the table."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mmrebal.engine import distributed
from mmrebal.engine.checkpoint import load_run_checkpoint
from mmrebal.engine.display import summary_table
from mmrebal.engine.hooks import metric_row
from mmrebal.evaluation.scoring import scope_metrics
from mmrebal.methods import METHODS
from mmrebal.registry import keyword_defaults
from mmrebal.samplers import SAMPLERS
from mmrebal.storage import atomic_write_bytes

if TYPE_CHECKING:
    from mmrebal.engine.trainer import Trainer


def ran_with(trainer: Trainer) -> dict[str, dict[str, Any]]:
    """The sampler's and the method's options with their defaults filled in, for the report."""
    c = trainer.config
    return {
        "sampler": {**keyword_defaults(type(trainer.sampler), SAMPLERS.reserved), **c.sampler_options},
        "method": {**trainer.method.ran_with(keyword_defaults(type(trainer.method), METHODS.reserved)),
                   **c.method_options},  # fmt: skip
    }


def finish(trainer: Trainer) -> dict[str, Any]:
    """Score the selected checkpoint on val and TEST; write the summary and the traces' selection."""
    distributed.barrier(trainer.dist)
    best, _ = load_run_checkpoint(trainer.checkpoint_path("best"))
    trainer.model.load_state_dict(best["model"])
    trainer.method.load_state_dict(best["method"])
    state = trainer.state
    epoch = state.best_epoch
    results = {
        split: scope_metrics(trainer.score(trainer.datasets[split], f"{split} (selected epoch {epoch + 1})"))
        for split in ("val", "test")
    }
    summary = {
        "status": "complete",
        "best_epoch": epoch,
        "epochs": trainer.config.epochs,
        "wall_time_s": state.wall_time_s,
        "train_samples_per_s": state.train_samples / max(state.train_time_s, 1e-9),
        "warnings": trainer.warnings,
        "options": ran_with(trainer),
        **results,
        **({"changes": trainer.changes} if trainer.changes else {}),
    }
    if trainer.dist.is_main:
        test_rows = [metric_row(epoch, "test", s, m, selected=True) for s, m in results["test"].items()]
        trainer.traces.select(epoch, test_rows)
        trainer.traces.flush()
        atomic_write_bytes(trainer.run_dir / "summary.json", json.dumps(summary, indent=2).encode())
        trainer.console.print(summary_table(results, epoch, trainer.run_dir))
    return summary
