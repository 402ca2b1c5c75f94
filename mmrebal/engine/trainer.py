"""The training loop: data -> ``method.train_step`` -> feedback; everything else is a hook.

Per epoch: a scoring pass over the train split when the sampler asks for one, then one step per
plan (sharded across DDP ranks, loaded with one ``__getitems__`` call, trained by the method, its
feedback all-reduced and handed back to the sampler), then ``sampler.end_epoch``. The hooks that
follow (LR schedule, validation and model selection, traces, checkpoints, logging) run in that order
after every epoch. Selection uses the validation split only; TEST is scored once, for the selected
checkpoint, at the end (and every epoch only when ``test_each_epoch`` asks, never for selection).

Epochs and global steps count from 0 in traces, checkpoints, summary.json and the sampler calls; the
terminal shows epochs 1-based (``epoch 1/3``, "selected epoch 3"). With ``workers > 0`` (the default
on CUDA, see ``mmrebal.engine.loading``) the DataLoader draws plans up to ``2 x workers`` steps ahead
of the feedback they could depend on; ``workers = 0`` (the default on CPU) keeps plan t+1 strictly
after the feedback of step t.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader

from mmrebal.cache.dataset import CacheDataset
from mmrebal.cache.format import CacheInfo, read_info
from mmrebal.engine import distributed, rundir
from mmrebal.engine.augment import build_augment
from mmrebal.engine.checkpoint import load_run_checkpoint, rng_state, save_checkpoint, set_rng_state
from mmrebal.engine.config import TrainConfig, config_yaml
from mmrebal.engine.device import autocast_factory, device_batch, resolve_device
from mmrebal.engine.display import Display
from mmrebal.engine.distributed import DistContext
from mmrebal.engine.loading import decide_preload, loader_settings
from mmrebal.engine.traces import TraceWriter, merge_step_rows
from mmrebal.evaluation.scoring import batch_loader, scope_metrics, score_split
from mmrebal.methods import Method, StepContext, StepResult
from mmrebal.samplers import create_sampler
from mmrebal.samplers.base import Plan, ScoreResult, StepFeedback
from mmrebal.samplers.discrepancy import CumulativeScore
from mmrebal.storage import atomic_write_bytes


class NonFiniteLoss(RuntimeError):
    """A NaN/inf loss; the message names epoch and step and says what to do."""


@dataclass
class RunState:
    """Counters that a checkpoint carries besides the modules' own states."""

    epoch: int = -1  # last completed epoch
    global_step: int = 0
    best_epoch: int = -1
    best_acc: float = -math.inf
    best_loss: float = math.inf
    train_time_s: float = 0.0
    wall_time_s: float = 0.0
    train_samples: int = 0


@dataclass
class StepRecord:
    """One optimisation step after the all-reduce: what every rank's sampler and the traces see."""

    epoch: int
    step: int
    rows: int
    loss: float
    lr: float
    batch_size: dict[str, int]
    confidence_sum: dict[str, float]
    modality_loss: dict[str, float]
    extra: dict[str, float] = field(default_factory=dict)


def default_run_dir(config: TrainConfig, info: CacheInfo) -> Path:
    dataset = info.attrs.get("dataset") or info.path.stem
    return Path("runs") / f"{dataset}-{config.sampler}-{config.method}-s{config.seed}"


def resolve_cache(config: TrainConfig) -> Path:
    """The cache to train on: ``--cache``, or the embedded default avmnist cache (built on first use)."""
    if config.cache:
        return Path(config.cache)
    from mmrebal.prep.avmnist import ensure_default_cache

    return ensure_default_cache(workers=config.workers or None)


def build_components(
    config: TrainConfig, info: CacheInfo, device: torch.device
) -> tuple[torch.nn.Module, Method]:
    """The model (on ``device``) and the method a config describes, for a cache's modalities and shapes."""
    from mmrebal.methods import create_method
    from mmrebal.models import build_model

    modalities = list(info.modalities)
    model = build_model(
        info.modalities,
        info.shapes,
        info.num_classes,
        config.encoder_map(modalities),
        fusion=config.fusion,
        feature_dim=config.feature_dim,
        **config.model_options,
    )
    return model.to(device), create_method(config.method, modalities, **config.method_options)


class EpochBatches:
    """The train loader's batch sampler: iterating it yields the current epoch's row lists, so one
    DataLoader (and its persistent workers) serves every epoch."""

    def __init__(self) -> None:
        self.source: Iterable[list[int]] = ()

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.source)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Hook:
    """Something that runs around the loop; the base does nothing so hooks override what they need."""

    def before_epoch(self, trainer: Trainer, epoch: int) -> None: ...

    def after_step(self, trainer: Trainer, record: StepRecord) -> None: ...

    def after_epoch(self, trainer: Trainer, epoch: int) -> None: ...


class ScheduleHook(Hook):
    def after_epoch(self, trainer: Trainer, epoch: int) -> None:
        if trainer.scheduler is not None:
            trainer.scheduler.step()


class EvalHook(Hook):
    """Validation metrics per scope; the best fused val accuracy wins, ties go to the lower val loss."""

    def after_epoch(self, trainer: Trainer, epoch: int) -> None:
        val = scope_metrics(trainer.score(trainer.datasets["val"], "validating"))
        trainer.last_val = val
        rows = [trainer.metric_row(epoch, "val", scope, m) for scope, m in val.items()]
        rows += [trainer.metric_row(epoch, "train", scope, m) for scope, m in trainer.train_summary().items()]
        if trainer.config.test_each_epoch:
            test = scope_metrics(trainer.score(trainer.datasets["test"], "testing"))
            rows += [trainer.metric_row(epoch, "test", scope, m) for scope, m in test.items()]
        trainer.traces.add("metrics", rows)
        state = trainer.state
        acc, loss = val["fused"]["acc"], val["fused"]["loss"]
        trainer.improved = acc > state.best_acc or (acc == state.best_acc and loss < state.best_loss)
        if trainer.improved:
            state.best_epoch, state.best_acc, state.best_loss = epoch, acc, loss


class TraceHook(Hook):
    """Step rows per modality (with Eq. 3's cumulative discrepancy), sampler rows, atomic flush per epoch."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def after_step(self, trainer: Trainer, record: StepRecord) -> None:
        self.rows.extend(trainer.step_rows(record))

    def after_epoch(self, trainer: Trainer, epoch: int) -> None:
        trainer.drain_sampler(epoch, self.rows)
        self.rows = []
        if trainer.dist.is_main:
            trainer.traces.flush()


class CheckpointHook(Hook):
    def after_epoch(self, trainer: Trainer, epoch: int) -> None:
        trainer.state.epoch = epoch
        trainer.state.wall_time_s += time.perf_counter() - trainer.epoch_started
        if not trainer.dist.is_main:
            return
        state = trainer.checkpoint_state()
        if trainer.improved:  # best first: a crash in between leaves last.pt one epoch behind, never ahead
            save_checkpoint(trainer.checkpoint_path("best"), state)
        save_checkpoint(trainer.checkpoint_path("last"), state)


class ProgressHook(Hook):
    """Feeds the display: each step's loss and rows to the epoch bar, one line after each epoch."""

    def __init__(self, display: Display) -> None:
        self.display = display

    def after_step(self, trainer: Trainer, record: StepRecord) -> None:
        self.display.after_step(record)

    def after_epoch(self, trainer: Trainer, epoch: int) -> None:
        self.display.epoch_line(trainer, epoch)


class Trainer:
    """Builds everything a run needs from a :class:`TrainConfig` and runs it; see :func:`train`."""

    def __init__(self, config: TrainConfig, console: Console | None = None, overwrite: bool = False) -> None:
        if overwrite and config.resume:
            raise rundir.RunDirError("--resume continues a run and --overwrite replaces it; choose one")
        self.console = console or Console()
        self.overwrite = overwrite
        self.lock: rundir.ExclusiveLock | None = None
        self.changes: list[dict[str, Any]] = []  # options changed on resume, with their epoch
        self.dist: DistContext = distributed.from_environment()
        self.device = resolve_device(config.device, self.dist.local_rank)
        distributed.init_process_group(self.dist, self.device)
        seed_everything(config.seed)
        if self.dist.is_main:  # rank 0 builds the default cache if needed; the others then find it
            cache = resolve_cache(config)
        distributed.barrier(self.dist)
        if not self.dist.is_main:
            cache = resolve_cache(config)
        self.config = config = dataclasses.replace(config, cache=str(cache))  # recorded as resolved
        self.info = read_info(cache)
        self.modalities = list(self.info.modalities)
        self.loading = loader_settings(config.workers, self.device, config.reader)
        preload, pin = decide_preload(config.preload, Path(cache)), self.loading.pin_memory
        self.datasets = {
            split: CacheDataset(cache, split, preload=preload, pin_memory=pin)
            for split in ("train", "val", "test")
        }
        for split, ds in self.datasets.items():
            if len(ds) == 0:
                raise ValueError(
                    f"{cache}: the {split} split is empty; rebuild the cache with a {split} split"
                )
        self.run_dir = Path(config.out) if config.out else default_run_dir(config, self.info)
        self.model, self.method = build_components(config, self.info, self.device)
        self.train_model = distributed.wrap_model(self.model, self.dist, self.device)
        train_set = self.datasets["train"]
        self.sampler = create_sampler(
            config.sampler,
            config.sampler_options,
            num_samples=len(train_set),
            labels=train_set.labels,
            modalities=self.modalities,
            batch_size=config.batch_size,
            epochs=config.epochs,
            seed=config.seed,
        )
        self.warnings = self.sampler.config_warnings() + self.method.config_warnings(
            config.epochs, config.optimizer
        )
        self.optimizer = self._optimizer()
        self.scheduler = self._scheduler()
        self.autocast = autocast_factory(self.device, config.bf16)
        self.augment = (
            build_augment(self.info.modalities, config.seed, self.dist.rank, config.augment_options)
            if config.augment
            else None
        )
        self.state = RunState()
        self.cumulative = CumulativeScore(self.modalities)
        run_columns = {"run_id": self.run_dir.name, "sampler": config.sampler, "method": config.method}
        self.traces = TraceWriter(self.run_dir, {**run_columns, "seed": config.seed})
        self.improved = False
        self.last_val: dict[str, dict[str, float]] = {}
        self.epoch_rate = 0.0
        self._epoch_losses: dict[str, list[tuple[float, int]]] = {}
        self.display = Display(self.console, self.dist.is_main)
        self.trace_hook = TraceHook()
        self.hooks: list[Hook] = [
            ScheduleHook(),
            EvalHook(),
            self.trace_hook,
            CheckpointHook(),
            ProgressHook(self.display),
        ]
        self.epoch_started = 0.0
        self.train_batches = EpochBatches()
        self.train_loader: DataLoader | None = None

    # --- set-up -------------------------------------------------------------------------------
    def _optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = self.model.param_groups(c.lr)  # layer-wise lr and frozen encoders (encoder options)
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        cls = torch.optim.Adam if c.optimizer == "adam" else torch.optim.AdamW
        return cls(params, lr=c.lr, weight_decay=c.weight_decay)

    def _scheduler(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        c = self.config
        return (
            torch.optim.lr_scheduler.StepLR(self.optimizer, c.step_size, c.gamma)
            if c.scheduler == "step"
            else None
        )

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
            "cumulative": self.cumulative.state_dict(),
            "rng": rng_state(),
            "run": vars(self.state).copy(),
            "val": self.last_val,
            "changes": self.changes,
        }

    def restore(self, path: Path) -> str | None:
        """Continue from a checkpoint exactly where it was written (end of its epoch), with the options
        that may change applied; returns a note on what was repaired or changed."""
        ckpt, saved = load_run_checkpoint(path)  # CPU first: RNG states must stay host tensors
        completed = ckpt["run"]["epoch"] + 1
        changed = rundir.resume_changes(saved.to_dict(), self.config.to_dict(), completed)
        records = rundir.change_records(changed, completed)
        self.changes = [*ckpt.get("changes", []), *records]
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if changed.keys() & set(rundir.SCHEDULE):  # --lr/--scheduler given anew: applied from here on
            for group in self.optimizer.param_groups:
                group["lr"] = group["initial_lr"] = self.config.lr
            self.scheduler = self._scheduler()
        elif self.scheduler is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.sampler.load_state_dict(ckpt["sampler"])
        self.method.load_state_dict(ckpt["method"])
        self.cumulative.load_state_dict(ckpt["cumulative"])
        repaired = self.dist.is_main and rundir.reconcile_best(self.run_dir, ckpt["run"], self.config.epochs)
        self.state = RunState(**ckpt["run"])
        self.last_val = ckpt["val"]
        set_rng_state(ckpt["rng"])
        self.traces.resume(self.state.epoch)
        notes = [repaired, records and f"from epoch {completed}: {rundir.describe(records)}"]
        return "; ".join(n for n in notes if n) or None

    def ran_with(self) -> dict[str, dict[str, Any]]:
        """The sampler's and the method's options with their defaults filled in, for the report."""
        from mmrebal.registry import keyword_defaults

        contract = ("num_samples", "labels", "modalities", "batch_size", "epochs", "seed")
        c = self.config
        return {
            "sampler": {**keyword_defaults(type(self.sampler), contract), **c.sampler_options},
            "method": {**keyword_defaults(type(self.method), ("modalities",)), **c.method_options},
        }

    def prepare_run_dir(self) -> None:
        """Lock the run dir; resume from ``last.pt`` when asked; otherwise start clean (see :mod:`rundir`)."""
        if self.dist.is_main:
            self.lock = rundir.lock(self.run_dir)
        last = self.checkpoint_path("last")
        if self.config.resume and last.exists():
            note = self.restore(last)
            if self.dist.is_main:
                done = self.state.epoch + 1  # the terminal counts epochs from 1
                line = f"resuming from {last} after epoch {done}"
                self.console.print(line, highlight=False, soft_wrap=True)
                if note:
                    self.console.print(note, highlight=False, soft_wrap=True)
        else:
            rundir.check_fresh_start(self.run_dir, self.config.resume, self.overwrite)
            if self.dist.is_main:
                if self.config.resume:
                    self.console.print(f"no checkpoint at {last}; starting from scratch", highlight=False)
                elif rundir.existing_run(self.run_dir):
                    self.console.print(
                        f"{self.run_dir}: replacing the earlier run (--overwrite)", soft_wrap=True
                    )
                rundir.clear(self.run_dir)
        if self.dist.is_main:
            atomic_write_bytes(
                self.run_dir / "config.yaml",
                config_yaml(self.config, self.info.attrs, self.changes).encode(),
            )
            for line in self.warnings:
                self.console.print(f"warning: {line}", highlight=False, soft_wrap=True)
        distributed.barrier(self.dist)

    # --- scoring ------------------------------------------------------------------------------
    def score(self, dataset: CacheDataset, what: str = "scoring") -> ScoreResult:
        """A no-grad pass over a split, each rank scoring its strided share, gathered in split order;
        ``what`` names its progress bar (rank 0's share, the total the bar shows)."""
        positions = np.arange(len(dataset))[self.dist.rank :: self.dist.world]
        with self.display.phase(what, len(positions)) as advance:
            local = score_split(
                self.model,
                self.method,
                dataset,
                self.device,
                self.config.eval_batch_size,
                positions=positions,
                loading=self.loading,
                autocast=self.autocast,
                on_batch=advance,
            )
        return distributed.gather_scores(self.dist, len(dataset), positions, local)

    # --- the loop -----------------------------------------------------------------------------
    def _batches(self, epoch: int, queue: deque) -> Iterator[list[int]]:
        """Row lists for the DataLoader, drawn lazily from the sampler; layouts wait in ``queue``.

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

    def train_epoch(self, epoch: int) -> None:
        if self.sampler.needs_scoring(epoch):
            scores = self.score(self.datasets["train"], f"scoring train (epoch {epoch + 1})")
            self.sampler.receive_scores(epoch, scores)
        self.method.begin_epoch(epoch, self.model, functools.partial(self.train_subset, epoch))
        self.display.start_epoch(epoch, self.config.epochs, self.sampler.epoch_steps(epoch))
        self.model.train()
        self._epoch_losses = {}
        queue: deque[tuple[Plan, np.ndarray, np.ndarray]] = deque()
        self.train_batches.source = self._batches(epoch, queue)
        if self.train_loader is None:  # one loader for the run: its workers persist across epochs
            self.train_loader = batch_loader(
                self.datasets["train"], self.train_batches, self.device, self.loading
            )
        started, samples = time.perf_counter(), 0
        for batch in self.train_loader:
            plan, active, fused = queue.popleft()
            record = self.train_step(epoch, batch, plan, active, fused)
            samples += record.rows
            for hook in self.hooks:
                hook.after_step(self, record)
        elapsed = time.perf_counter() - started
        self.epoch_rate = samples / max(elapsed, 1e-9)
        self.state.train_time_s += elapsed
        self.state.train_samples += samples

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
        result = self.method.train_step(
            self.train_model,
            batch,
            torch.from_numpy(active),  # masks stay on the host: methods select rows there, no GPU sync
            torch.from_numpy(fused),
            self.optimizer,
            ctx,
        )
        record = self.reduce(epoch, step, len(active), result)
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

    def reduce(self, epoch: int, step: int, rows: int, result: StepResult) -> StepRecord:
        """Global step numbers: sizes and confidence sums summed, losses averaged by rows, over ranks."""
        stats = result.modality
        sizes = [stats[m].batch_size if m in stats else 0 for m in self.modalities]
        extra_keys = sorted(result.extra)
        vector = [float(rows), result.loss * rows]
        for m, n in zip(self.modalities, sizes, strict=True):
            vector += [n, stats[m].confidence_sum if n else 0.0, stats[m].loss * n if n else 0.0]
        vector += [result.extra[k] for k in extra_keys]
        total = distributed.all_reduce_sum(self.dist, np.asarray(vector, dtype=np.float64), self.device)
        n_rows = int(total[0])
        end = 2 + 3 * len(self.modalities)
        per = dict(zip(self.modalities, total[2:end].reshape(-1, 3), strict=True))
        return StepRecord(
            epoch=epoch,
            step=step,
            rows=n_rows,
            loss=float(total[1] / max(n_rows, 1)),
            lr=float(self.optimizer.param_groups[0]["lr"]),
            batch_size={m: int(p[0]) for m, p in per.items()},
            confidence_sum={m: float(p[1]) for m, p in per.items()},
            modality_loss={m: float(p[2] / p[0]) if p[0] else math.nan for m, p in per.items()},
            extra={k: float(v) / self.dist.world for k, v in zip(extra_keys, total[end:], strict=True)},
        )

    def stop_on_nonfinite(self, record: StepRecord) -> None:
        """Flush what the traces have (the bad step included) and stop; checkpoints are not touched."""
        self.trace_hook.after_step(self, record)
        self.traces.add("steps", self.trace_hook.rows)
        self.display.close()
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.traces.flush()
        last = self.checkpoint_path("last")
        kept = f"last good checkpoint {last} is intact" if last.exists() else "no checkpoint was written yet"
        raise NonFiniteLoss(
            f"epoch {record.epoch} step {record.step}: loss is {record.loss} (method {self.config.method}, "
            f"lr {record.lr:g}); {kept}; lower --lr or check the inputs, then rerun (--resume continues)"
        )

    # --- rows ---------------------------------------------------------------------------------
    def step_rows(self, record: StepRecord) -> list[dict[str, Any]]:
        rows = []
        for m in self.modalities:
            n = record.batch_size[m]
            if n == 0:
                continue
            s = record.confidence_sum[m]
            self._epoch_losses.setdefault(m, []).append((record.modality_loss[m], n))
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
        self._epoch_losses.setdefault("total", []).append((record.loss, record.rows))
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

    def drain_sampler(self, epoch: int, step_rows: list[dict[str, Any]]) -> None:
        """Merge the sampler's step columns into the trainer's rows; add ``sample_id`` to its sample rows."""
        self.traces.add("steps", merge_step_rows(step_rows, self.sampler.drain_step_rows(), epoch))
        ids = self.datasets["train"].sample_ids
        samples = self.sampler.drain_sample_rows()
        self.traces.add("samples", [{"sample_id": ids[int(r["idx"])], **r} for r in samples])

    def train_summary(self) -> dict[str, dict[str, float]]:
        """Train-split rows: the epoch's mean step losses per modality and of the whole objective (scope
        ``total``: what the method back-propagated); accuracy is not measured during training."""
        out = {}
        for scope, pairs in self._epoch_losses.items():
            n = sum(k for _, k in pairs)
            out[scope] = {"acc": math.nan, "map": math.nan, "macro_f1": math.nan,
                          "loss": sum(v * k for v, k in pairs) / max(n, 1)}  # fmt: skip
        return out

    def epoch_loss(self) -> float:
        return self.train_summary().get("total", {}).get("loss", math.nan)

    @staticmethod
    def metric_row(epoch: int, split: str, scope: str, m: dict[str, float], selected: bool = False) -> dict:
        return {"epoch": epoch, "split": split, "scope": scope, "acc": m["acc"], "map": m["map"],
                "macro_f1": m["macro_f1"], "loss": m["loss"], "selected": selected}  # fmt: skip

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.display.banner(self, self.state.epoch + 1)
        self.prepare_run_dir()
        try:
            for epoch in range(self.state.epoch + 1, self.config.epochs):
                self.epoch_started = time.perf_counter()
                for hook in self.hooks:
                    hook.before_epoch(self, epoch)
                self.train_epoch(epoch)
                self.sampler.end_epoch(epoch)
                what = f"the sampler state after epoch {epoch}"
                distributed.assert_in_sync(self.dist, what, self.sampler.state_dict())
                for hook in self.hooks:
                    hook.after_epoch(self, epoch)
        finally:
            self.display.close()
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """Load the checkpoint selected on val, score val and TEST with it, write summary and traces."""
        distributed.barrier(self.dist)
        best, _ = load_run_checkpoint(self.checkpoint_path("best"))
        self.model.load_state_dict(best["model"])
        self.method.load_state_dict(best["method"])
        epoch = self.state.best_epoch
        results = {
            split: scope_metrics(self.score(self.datasets[split], f"{split} (selected epoch {epoch + 1})"))
            for split in ("val", "test")
        }
        summary = {
            "status": "complete",
            "best_epoch": epoch,
            "epochs": self.config.epochs,
            "wall_time_s": self.state.wall_time_s,
            "train_samples_per_s": self.state.train_samples / max(self.state.train_time_s, 1e-9),
            "warnings": self.warnings,
            "options": self.ran_with(),
            **results,
            **({"changes": self.changes} if self.changes else {}),
        }
        if self.dist.is_main:
            test_rows = [
                self.metric_row(epoch, "test", s, m, selected=True) for s, m in results["test"].items()
            ]
            self.traces.select(epoch, test_rows)
            self.traces.flush()
            atomic_write_bytes(self.run_dir / "summary.json", json.dumps(summary, indent=2).encode())
            self.console.print(summary_table(results, epoch, self.run_dir))
        return summary


def summary_table(results: dict[str, dict[str, dict[str, float]]], best_epoch: int, run_dir: Path) -> Table:
    table = Table(title=f"{run_dir}  (selected epoch {best_epoch + 1} on val)")
    for column in ("scope", "val acc", "test acc", "test MAP", "test macro-F1"):
        table.add_column(column, justify="left" if column == "scope" else "right")
    for scope, test in results["test"].items():
        val = results["val"][scope]
        cells = (val["acc"], test["acc"], test["map"], test["macro_f1"])
        table.add_row(scope, *(f"{v:.4f}" for v in cells))
    return table


def train(config: TrainConfig, console: Console | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Run one training job end to end and return its summary (also in ``RUN_DIR/summary.json``);
    ``overwrite`` allows replacing a run already in ``config.out``."""
    trainer = Trainer(config, console, overwrite)
    try:
        summary = trainer.run()
        distributed.barrier(trainer.dist)  # no rank tears the group down while another still uses it
        return summary
    finally:
        if trainer.lock is not None:
            trainer.lock.release()
        distributed.shutdown(trainer.dist)
