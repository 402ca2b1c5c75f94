"""The training loop: data -> ``method.train_step`` -> feedback; everything else is a hook.

The trainer receives its parts built (:mod:`mmrebal.engine.build`); the hooks
(:mod:`mmrebal.engine.hooks`) do the rest, and :mod:`mmrebal.engine.finish` ends the run.

Per epoch: a scoring pass over the train split when the sampler asks for one, then one step per
plan (sharded across DDP ranks, loaded with one ``__getitems__`` call, trained by the method, its
feedback all-reduced and handed back to the sampler), then ``sampler.end_epoch``. The hooks that
follow (LR schedule, validation and model selection, traces, checkpoints, progress) run in that
order after every epoch. Selection uses the validation split only; TEST is scored once, for the selected
checkpoint, at the end (and every epoch only when ``test_each_epoch`` asks, never for selection).

Epochs and global steps count from 0 in traces, checkpoints, summary.json and the sampler calls; the
terminal shows epochs 1-based (``epoch 1/3``, "selected epoch 3"). With ``workers > 0`` (the default
on CUDA, see ``mmrebal.data.loading``) the loader's readers draw plans up to ``2 x workers`` steps ahead
of the feedback they could depend on; ``workers = 0`` (the default on CPU) keeps plan t+1 strictly
after the feedback of step t.
"""

from __future__ import annotations

import functools
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from mmrebal.cache.dataset import CacheDataset
from mmrebal.data.device import device_batch
from mmrebal.data.loading import BatchLoader, batch_loader
from mmrebal.engine import distributed, resume, rundir
from mmrebal.engine.build import RunParts, build_run, run_warnings
from mmrebal.engine.checkpoint import rng_state
from mmrebal.engine.config import TrainConfig
from mmrebal.engine.display import Display
from mmrebal.engine.finish import finish
from mmrebal.engine.hooks import CheckpointHook, EvalHook, HookBase, ProgressHook, ScheduleHook, TraceHook
from mmrebal.engine.records import EpochRecord, RunState, StepRecord, reduce_step
from mmrebal.engine.traces import TraceWriter
from mmrebal.evaluation.scores import ScoreResult
from mmrebal.evaluation.scoring import score_split
from mmrebal.methods import StepContext, TrainStep
from mmrebal.samplers.base import Plan, StepFeedback


class NonFiniteLoss(RuntimeError):
    """A NaN/inf loss; the message names epoch and step and says what to do."""


class EpochBatches:
    """The train loader's batch sampler: iterating it yields the current epoch's row lists, so one
    loader (and its persistent workers) serves every epoch."""

    def __init__(self) -> None:
        self.source: Iterable[list[int]] = ()

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.source)


class Trainer:
    """Runs a run's built parts (:func:`mmrebal.engine.build.build_run`); see :func:`train`."""

    def __init__(self, parts: RunParts, console: Console | None = None, overwrite: bool = False) -> None:
        config = parts.config
        self.console = console or Console()
        self.overwrite = overwrite
        self.lock: rundir.ExclusiveLock | None = None
        self.changes: list[dict[str, Any]] = []  # options changed on resume, with their epoch
        self.config, self.dist, self.device, self.info = config, parts.dist, parts.device, parts.info
        self.datasets, self.run_dir, self.loading = parts.datasets, parts.run_dir, parts.loading
        self.model, self.train_model, self.method = parts.model, parts.train_model, parts.method
        self.sampler, self.optimizer, self.scheduler = parts.sampler, parts.optimizer, parts.scheduler
        self.autocast, self.augment = parts.autocast, parts.augment
        self.modalities = parts.modalities
        self.warnings = run_warnings(self.sampler, self.method, config)
        self.state = RunState()
        run_columns = {"run_id": self.run_dir.name, "sampler": config.sampler, "method": config.method}
        self.traces = TraceWriter(self.run_dir, {**run_columns, "seed": config.seed})
        self.display = Display(self.console, self.dist.is_main)
        self.trace_hook = TraceHook(self.modalities)
        self.hooks: list[HookBase] = [
            ScheduleHook(),
            EvalHook(),
            self.trace_hook,
            CheckpointHook(),
            ProgressHook(self.display),
        ]
        self.train_batches = EpochBatches()
        self.train_loader: BatchLoader | None = None

    # --- checkpoints and the run dir -----------------------------------------------------------
    def checkpoint_path(self, which: str) -> Path:
        return rundir.checkpoint_path(self.run_dir, which)

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "sampler": self.sampler.state_dict(),
            "method": self.method.state_dict(),
            "rng": rng_state(),
            "run": vars(self.state).copy(),
            "changes": self.changes,
            **{hook.key: hook.state_dict() for hook in self.hooks if hook.key},
        }

    def prepare_run_dir(self) -> None:
        """Lock the run dir; resume from ``last.pt`` when asked; otherwise start clean (see :mod:`resume`)."""
        resume.prepare_run_dir(self)

    # --- scoring ------------------------------------------------------------------------------
    def score(self, dataset: CacheDataset, what: str = "scoring", train_mode: bool = False) -> ScoreResult:
        """A no-grad pass over a split, each rank scoring its strided share, gathered in split order;
        ``what`` names its progress bar (rank 0's share, the total the bar shows). ``train_mode``: the
        model in train mode over batches of the training size (the sampler's reference measurer)."""
        positions = np.arange(len(dataset))[self.dist.rank :: self.dist.world]
        with self.display.phase(what, len(positions)) as advance:
            local = score_split(
                self.model,
                self.method,
                dataset,
                self.device,
                self.config.batch_size if train_mode else self.config.eval_batch_size,
                positions=positions,
                loading=self.loading,
                autocast=self.autocast,
                on_batch=advance,
                train_mode=train_mode,
            )
        return distributed.gather_scores(self.dist, len(dataset), positions, local)

    # --- the loop -----------------------------------------------------------------------------
    def _batches(self, epoch: int, queue: deque) -> Iterator[list[int]]:
        """Row lists for the train loader, drawn lazily from the sampler; layouts wait in ``queue``.

        An empty plan, or one too small to give every rank a row, is skipped (on all ranks alike).
        """
        for plan in self.sampler.plans(epoch):
            if max((len(g.indices) for g in plan.groups), default=0) < self.dist.world:
                continue
            local = plan.shard(self.dist.rank, self.dist.world)
            rows, active, fused = local.layout(self.modalities)
            queue.append((plan, active, fused))
            yield rows.tolist()

    def train_subset(self, epoch: int, fraction: float) -> Iterator[dict[str, Any]]:
        """This rank's share of a seeded random ``fraction`` of the train split, batch by batch."""
        n = len(self.datasets["train"])
        chosen = np.random.default_rng([self.config.seed, epoch]).permutation(n)[
            : max(1, round(fraction * n))
        ]
        local = np.sort(chosen)[self.dist.rank :: self.dist.world]
        size = self.config.eval_batch_size
        chunks = [local[i : i + size].tolist() for i in range(0, len(local), size)]
        for batch in batch_loader(self.datasets["train"], chunks, self.device):  # a short main-process pass
            yield device_batch(batch, self.info.modalities, self.device)

    def train_epoch(self, epoch: int) -> EpochRecord:
        """The epoch's scoring pass (if the sampler asks), the method's epoch start, then every step."""
        record = EpochRecord(epoch, self.config.epochs)
        if self.sampler.needs_scoring(epoch):
            what, train_mode = f"scoring train (epoch {epoch + 1})", self.sampler.scores_in_train_mode
            scores = self.score(self.datasets["train"], what, train_mode)
            self.sampler.receive_scores(epoch, scores)
        self.method.begin_epoch(epoch, self.model, functools.partial(self.train_subset, epoch))
        for hook in self.hooks:
            hook.before_epoch(self, record)
        self.model.train()
        queue: deque[tuple[Plan, np.ndarray, np.ndarray]] = deque()
        self.train_batches.source = self._batches(epoch, queue)
        if self.train_loader is None:  # one loader for the run: its workers persist across epochs
            self.train_loader = batch_loader(
                self.datasets["train"], self.train_batches, self.device, self.loading
            )
        started, samples = time.perf_counter(), 0
        for batch in self.train_loader:
            plan, active, fused = queue.popleft()
            for hook in self.hooks:
                hook.before_step(self, record)
            step = self.train_step(epoch, batch, plan, active, fused)
            samples += step.rows
            record.add(step)
            for hook in self.hooks:
                hook.after_step(self, record, step)
        elapsed = time.perf_counter() - started
        record.rate = samples / max(elapsed, 1e-9)
        self.state.train_time_s += elapsed
        self.state.train_samples += samples
        return record

    def train_step(
        self, epoch: int, batch: dict[str, Any], plan: Plan, active: np.ndarray, fused: np.ndarray
    ) -> StepRecord:
        step = self.state.global_step
        batch = device_batch(batch, self.info.modalities, self.device)
        if self.augment is not None:
            batch = self.augment(batch, step)
        ctx = StepContext(
            epoch=epoch,
            step=step,
            loss_weights=plan.loss_weights,
            autocast=self.autocast,
            normaliser=plan.normaliser,
        )
        masks = torch.from_numpy(active), torch.from_numpy(fused)  # stay on the host: no GPU sync
        result = self.method.train_step(TrainStep(self.train_model, batch, *masks, self.optimizer, ctx))
        lr = float(self.optimizer.param_groups[0]["lr"])
        record = reduce_step(self.dist, self.device, self.modalities, epoch, step, len(active), result, lr)
        self.state.global_step += 1
        if not math.isfinite(record.loss):
            self.stop_on_nonfinite(record)
        self.sampler.feedback(
            StepFeedback(
                epoch=epoch,
                step=step,
                batch_size={m: n for m, n in record.batch_size.items() if n > 0},
                confidence_sum={m: c for m, c in record.confidence_sum.items() if record.batch_size[m] > 0},
                loss={m: v for m, v in record.modality_loss.items() if record.batch_size[m] > 0},
            )
        )
        return record

    def stop_on_nonfinite(self, record: StepRecord) -> None:
        """Flush what the traces have (the bad step included) and stop; checkpoints are not touched."""
        self.display.close()
        self.trace_hook.flush_partial(self, record)
        last = self.checkpoint_path("last")
        kept = f"last good checkpoint {last} is intact" if last.exists() else "no checkpoint was written yet"
        raise NonFiniteLoss(
            f"epoch {record.epoch} step {record.step}: loss is {record.loss} (method {self.config.method}, "
            f"lr {record.lr:g}); {kept}; lower --lr or check the inputs, then rerun (--resume continues)"
        )

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.display.banner(self, self.state.epoch + 1)
        self.prepare_run_dir()
        for hook in self.hooks:
            hook.before_train(self)
        try:
            for epoch in range(self.state.epoch + 1, self.config.epochs):
                record = self.train_epoch(epoch)
                self.sampler.end_epoch(epoch)
                what = f"the sampler state after epoch {epoch}"
                distributed.assert_in_sync(self.dist, what, self.sampler.state_dict())
                for hook in self.hooks:
                    hook.after_epoch(self, record)
        finally:
            self.display.close()
        for hook in self.hooks:
            hook.after_train(self)
        return finish(self)


def train(
    config: TrainConfig,
    console: Console | None = None,
    overwrite: bool = False,
    default_cache: Callable[[], Path] | None = None,
) -> dict[str, Any]:
    """Run one training job end to end and return its summary (also in ``RUN_DIR/summary.json``);
    ``overwrite`` allows replacing a run already in ``config.out``; ``default_cache`` gives the cache
    when the config names none (see :func:`~mmrebal.engine.build.build_run`)."""
    if overwrite and config.resume:  # refused before anything is built or joined
        raise rundir.RunDirError("--resume continues a run and --overwrite replaces it; choose one")
    trainer = Trainer(build_run(config, default_cache), console, overwrite)
    try:
        summary = trainer.run()
        distributed.barrier(trainer.dist)  # no rank tears the group down while another still uses it
        return summary
    finally:
        if trainer.lock is not None:
            trainer.lock.release()
        distributed.shutdown(trainer.dist)
