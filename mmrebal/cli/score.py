"""`mmrebal score RUN_DIR`: metrics and per-sample predictions of a run's checkpoint on a split."""

from __future__ import annotations

from pathlib import Path

import typer

from mmrebal.cli.train import fail_cleanly


def score_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by `mmrebal train`."),
    split: str = typer.Option("test", "--split", help="train | val | test"),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last | PATH"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Default: the run's eval batch size."),
) -> None:
    """Write RUN_DIR/scores.json and RUN_DIR/predictions.parquet and print acc, MAP and macro-F1."""
    with fail_cleanly():
        from rich.console import Console
        from rich.table import Table

        from mmrebal.engine.display import Display
        from mmrebal.engine.score import score_run

        err = Console(stderr=True)
        scores = score_run(run_dir, split, checkpoint, device, batch_size, Display(err, is_main=True))
        table = Table(title=f"{scores['checkpoint']} (epoch {scores['epoch'] + 1}) on {split}")
        for column in ("scope", "acc", "MAP", "macro-F1", "loss"):
            table.add_column(column, justify="left" if column == "scope" else "right")
        for scope, m in scores["scores"].items():
            table.add_row(scope, *(f"{m[k]:.4f}" for k in ("acc", "map", "macro_f1", "loss")))
        Console().print(table)
