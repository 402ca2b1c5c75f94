"""What a run shows in the terminal: a start banner, one bar per epoch (steps with ETA, live loss and
samples/s), a bar for each scoring and validation pass with its real total, and one line per epoch.

Bars draw only on a terminal and only on rank 0; the banner and the epoch lines are printed always
(they are what ``train.log`` keeps). Epochs are shown 1-based, ``epoch 1/3``; traces count from 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from mmrebal.engine.hooks import EpochRecord, StepRecord
    from mmrebal.engine.trainer import Trainer


def _options(options: dict[str, Any]) -> str:
    return f" ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else ""


def banner_lines(trainer: Trainer, first_epoch: int) -> list[str]:
    """Where and what a run trains, before its first step: the facts a hung-looking start hides."""
    c = trainer.config
    sizes = ", ".join(f"{split} {len(ds)}" for split, ds in trainer.datasets.items())
    steps = trainer.sampler.epoch_steps(first_epoch)
    per_epoch = f"{steps} steps in epoch {first_epoch + 1}" if steps is not None else "steps: the sampler's"
    dtype = "bf16 autocast" if c.bf16 and trainer.device.type == "cuda" else "float32"
    world = f" x {trainer.dist.world} ranks" if trainer.dist.world > 1 else ""
    return [
        f"mmrebal train -> {trainer.run_dir}",
        f"  device   {trainer.device}{world}, {dtype}, {c.workers} loader workers",
        f"  cache    {c.cache} ({', '.join(trainer.modalities)}; {trainer.info.num_classes} classes)",
        f"  splits   {sizes}",
        f"  sampler  {c.sampler}{_options(c.sampler_options)}",
        f"  method   {c.method}{_options(c.method_options)}",
        f"  model    {c.encoders} encoders, {c.fusion} fusion, feature_dim {c.feature_dim}"
        + _options(c.model_options),
        f"  schedule {c.epochs} epochs, batch {c.batch_size}, {per_epoch}, {c.optimizer} lr {c.lr:g}, "
        f"scheduler {c.scheduler}, preset {c.preset}" + (", augment" if c.augment else ""),
    ]


class Display:
    """The hooks the trainer calls to show progress; silent bars off a terminal or off rank 0."""

    def __init__(self, console: Console, is_main: bool) -> None:
        self.console = console
        self.is_main = is_main
        self.progress: Progress | None = None
        self.task: Any = None
        self.started = 0.0
        self.samples = 0
        self.loss_sum = 0.0

    def print(self, text: str) -> None:
        if self.is_main:
            self.console.print(text, highlight=False, soft_wrap=True)

    def banner(self, trainer: Trainer, first_epoch: int) -> None:
        for line in banner_lines(trainer, first_epoch):
            self.print(line)

    def _bar(self, *columns: Any) -> Progress:
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            *columns,
            TimeElapsedColumn(),
            TextColumn("<"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not (self.is_main and self.console.is_terminal),
            transient=True,
        )
        progress.start()
        return progress

    def start_epoch(self, epoch: int, epochs: int, steps: int | None) -> None:
        self.close()
        self.started, self.samples, self.loss_sum = time.perf_counter(), 0, 0.0
        self.progress = self._bar(
            TextColumn("steps  loss {task.fields[loss]:.4f}  {task.fields[rate]:.0f} samples/s"),
        )
        self.task = self.progress.add_task(
            f"epoch {epoch + 1}/{epochs}", total=steps, loss=float("nan"), rate=0.0
        )

    def after_step(self, record: StepRecord) -> None:
        self.samples += record.rows
        self.loss_sum += record.loss * record.rows
        if self.progress is not None:
            rate = self.samples / max(time.perf_counter() - self.started, 1e-9)
            loss = self.loss_sum / max(self.samples, 1)
            self.progress.update(self.task, advance=1, loss=loss, rate=rate)

    @contextmanager
    def phase(self, what: str, total: int) -> Iterator[Callable[[int], None]]:
        """A bar over ``total`` samples for a scoring/validation pass; yields the per-batch callback."""
        started = time.perf_counter()
        progress = self._bar(TextColumn("samples  {task.fields[rate]:.0f} samples/s"))
        task = progress.add_task(what, total=total, rate=0.0)
        done = [0]

        def advance(rows: int) -> None:
            done[0] += rows
            rate = done[0] / max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=rows, rate=rate)

        try:
            yield advance
        finally:
            progress.refresh()  # the final count is drawn once, however short the pass
            progress.stop()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.refresh()
            self.progress.stop()
            self.progress = None

    def epoch_line(self, epoch: EpochRecord) -> None:
        self.close()
        val = epoch.val
        accs = "  ".join(f"{scope} {m['acc']:.3f}" for scope, m in val.items())
        mark = " *" if epoch.improved else ""
        self.print(
            f"epoch {epoch.epoch + 1}/{epoch.epochs}  train loss {epoch.train_loss():.4f}  "
            f"val acc {accs}  val loss {val['fused']['loss']:.4f}  "
            f"{epoch.rate:.0f} samples/s  {time.perf_counter() - epoch.started:.1f} s{mark}"
        )


def summary_table(results: dict[str, dict[str, dict[str, float]]], best_epoch: int, run_dir: Path) -> Table:
    """The table a finished run prints: val and test metrics per scope of the selected checkpoint."""
    table = Table(title=f"{run_dir}  (selected epoch {best_epoch + 1} on val)")
    for column in ("scope", "val acc", "test acc", "test MAP", "test macro-F1"):
        table.add_column(column, justify="left" if column == "scope" else "right")
    for scope, test in results["test"].items():
        val = results["val"][scope]
        cells = (val["acc"], test["acc"], test["map"], test["macro_f1"])
        table.add_row(scope, *(f"{v:.4f}" for v in cells))
    return table
