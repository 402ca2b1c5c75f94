"""What runs around the training loop, detectron2-style: each hook overrides the moments it needs.

The loop calls ``before_train``, then per epoch ``before_epoch``, ``before_step``/``after_step``
around every step and ``after_epoch``, then ``after_train``. Hooks talk through the
:class:`EpochRecord` the loop hands them (the epoch's step losses, its validation metrics, whether
it is the best so far), never through each other's attributes; the order of ``Trainer.hooks`` is
the order of their ``after_epoch`` (schedule, validation, traces, checkpoint, progress). A hook
with state names a checkpoint ``key`` and round-trips it with ``state_dict``/``load_state_dict``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mmrebal.engine.checkpoint import save_checkpoint
from mmrebal.engine.display import Display
from mmrebal.engine.records import EpochRecord, StepRecord, metric_row
from mmrebal.engine.traces import merge_step_rows
from mmrebal.evaluation.discrepancy import CumulativeScore
from mmrebal.evaluation.scoring import scope_metrics

if TYPE_CHECKING:
    from mmrebal.engine.trainer import Trainer


class HookBase:
    """Does nothing at every moment; a hook overrides what it needs. ``key``: its checkpoint entry."""

    key: str | None = None

    def before_train(self, trainer: Trainer) -> None: ...

    def before_epoch(self, trainer: Trainer, epoch: EpochRecord) -> None: ...

    def before_step(self, trainer: Trainer, epoch: EpochRecord) -> None: ...

    def after_step(self, trainer: Trainer, epoch: EpochRecord, record: StepRecord) -> None: ...

    def after_epoch(self, trainer: Trainer, epoch: EpochRecord) -> None: ...

    def after_train(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> Any:
        return None

    def load_state_dict(self, state: Any) -> None: ...


class ScheduleHook(HookBase):
    def after_epoch(self, trainer: Trainer, epoch: EpochRecord) -> None:
        if trainer.scheduler is not None:
            trainer.scheduler.step()


class EvalHook(HookBase):
    """Validation metrics per scope; the best fused val accuracy wins, ties go to the lower val loss.
    Keeps the latest validation metrics (checkpoint key ``val``)."""

    key = "val"

    def __init__(self) -> None:
        self.last: dict[str, dict[str, float]] = {}

    def after_epoch(self, trainer: Trainer, epoch: EpochRecord) -> None:
        e = epoch.epoch
        val = scope_metrics(trainer.score(trainer.datasets["val"], "validating"))
        self.last = epoch.val = val
        rows = [metric_row(e, "val", scope, m) for scope, m in val.items()]
        rows += [metric_row(e, "train", scope, m) for scope, m in epoch.train_summary().items()]
        if trainer.config.test_each_epoch:
            test = scope_metrics(trainer.score(trainer.datasets["test"], "testing"))
            rows += [metric_row(e, "test", scope, m) for scope, m in test.items()]
        trainer.traces.add("metrics", rows)
        state = trainer.state
        acc, loss = val["fused"]["acc"], val["fused"]["loss"]
        epoch.improved = acc > state.best_acc or (acc == state.best_acc and loss < state.best_loss)
        if epoch.improved:
            state.best_epoch, state.best_acc, state.best_loss = e, acc, loss

    def state_dict(self) -> dict[str, dict[str, float]]:
        return self.last

    def load_state_dict(self, state: dict[str, dict[str, float]]) -> None:
        self.last = state


class TraceHook(HookBase):
    """Step rows per modality with DUS Eq. 3's cumulative discrepancy (for every run, whatever the
    sampler: the report compares them), the sampler's rows, an atomic flush per epoch. Keeps the
    running Eq. 3 state (checkpoint key ``cumulative``)."""

    key = "cumulative"

    def __init__(self, modalities: list[str]) -> None:
        self.modalities = modalities
        self.cumulative = CumulativeScore(modalities)
        self.rows: list[dict[str, Any]] = []

    def after_step(self, trainer: Trainer, epoch: EpochRecord, record: StepRecord) -> None:
        self.rows.extend(self.step_rows(record))

    def step_rows(self, record: StepRecord) -> list[dict[str, Any]]:
        rows = []
        for m in self.modalities:
            n = record.batch_size[m]
            if n == 0:
                continue
            s = record.confidence_sum[m]
            rows.append(
                {
                    "epoch": record.epoch,
                    "step": record.step,
                    "modality": m,
                    "batch_size": n,
                    "confidence": s / n,
                    "discrepancy": s,
                    "cum_discrepancy": self.cumulative.update({m: s})[m],
                    "loss": record.modality_loss[m],
                    "lr": record.lr,
                    "total_loss": record.loss,
                    **self.extra_columns(record.extra, m),
                }
            )
        return rows

    def extra_columns(self, extra: dict[str, float], modality: str) -> dict[str, float]:
        """Method diagnostics for ``modality``'s row: ``"rho/audio"`` becomes ``rho`` on the audio row
        (one column whatever the modalities are called); a key without a modality goes on every row."""
        out = {}
        for key, value in extra.items():
            name, _, of = key.rpartition("/")
            if not name or of not in self.modalities:
                out[key] = value
            elif of == modality:
                out[name] = value
        return out

    def after_epoch(self, trainer: Trainer, epoch: EpochRecord) -> None:
        """Merge the sampler's step columns into the rows; add ``sample_id`` to its sample rows."""
        sampler, traces = trainer.sampler, trainer.traces
        traces.add("steps", merge_step_rows(self.rows, sampler.drain_step_rows(), epoch.epoch))
        self.rows = []
        ids = trainer.datasets["train"].sample_ids
        traces.add("samples", [{"sample_id": ids[int(r["idx"])], **r} for r in sampler.drain_sample_rows()])
        if trainer.dist.is_main:
            traces.flush()

    def flush_partial(self, trainer: Trainer, record: StepRecord) -> None:
        """The rows so far and ``record``'s (a run stopping mid-epoch), written now."""
        self.rows.extend(self.step_rows(record))
        trainer.traces.add("steps", self.rows)
        if trainer.dist.is_main:
            trainer.run_dir.mkdir(parents=True, exist_ok=True)
            trainer.traces.flush()

    def state_dict(self) -> dict[str, Any]:
        return self.cumulative.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cumulative.load_state_dict(state)


class CheckpointHook(HookBase):
    def after_epoch(self, trainer: Trainer, epoch: EpochRecord) -> None:
        trainer.state.epoch = epoch.epoch
        trainer.state.wall_time_s += time.perf_counter() - epoch.started
        if not trainer.dist.is_main:
            return
        state = trainer.checkpoint_state()
        if epoch.improved:  # best first: a crash in between leaves last.pt one epoch behind, never ahead
            save_checkpoint(trainer.checkpoint_path("best"), state)
        save_checkpoint(trainer.checkpoint_path("last"), state)


class ProgressHook(HookBase):
    """Feeds the display: the banner, each step's loss and rows to the epoch bar, one line per epoch."""

    def __init__(self, display: Display) -> None:
        self.display = display

    def before_epoch(self, trainer: Trainer, epoch: EpochRecord) -> None:
        self.display.start_epoch(epoch.epoch, epoch.epochs, trainer.sampler.epoch_steps(epoch.epoch))

    def after_step(self, trainer: Trainer, epoch: EpochRecord, record: StepRecord) -> None:
        self.display.after_step(record)

    def after_epoch(self, trainer: Trainer, epoch: EpochRecord) -> None:
        self.display.epoch_line(epoch)
