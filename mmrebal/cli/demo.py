"""`mmrebal demo`: the uniform baseline and one rebalancing sampler on the same cache, side by side.

It is a small sweep (``uniform`` and ``--sampler`` with one method, plus each modality alone for the
imbalance gap) and a report, then a table of what changed. Re-running it skips the finished cells.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from mmrebal.cli.train import default_cache, fail_cleanly

# The demo's training: the cpu preset with the half-width CNNs, so the four runs and the cache build
# fit in a few minutes on 2 cores.
DEMO_TRAIN = ["--preset", "cpu", "--encoders", "cnn-small"]
DEMO_EPOCHS = 12


def demo_command(
    sampler: str = typer.Option("remix", help="The rebalancing sampler beside uniform (NAME[:KEY=VALUE])."),
    method: str = typer.Option(
        "fused", help="The method both train with; fused (the fused loss only) is where the imbalance is."
    ),
    cache: Path | None = typer.Option(
        None, help="HDF5 cache (default: the embedded avmnist, built if absent)."
    ),
    out: Path = typer.Option(Path("runs/demo"), help="Sweep directory of the demo's runs and report."),
    epochs: int = typer.Option(DEMO_EPOCHS, help="Epochs of every run."),
    seed: int = typer.Option(0, help="Seed of every run."),
) -> None:
    """Train uniform and SAMPLER (and each modality alone), then show fused and per-modality accuracy
    and each modality's gap to itself alone, side by side."""
    with fail_cleanly():
        from rich.console import Console

        from mmrebal.report import write_report
        from mmrebal.sweep import SweepError, SweepRunner, build_spec, error_line, parse_entry

        err = Console(stderr=True)
        if parse_entry(sampler)[0] == "uniform":
            raise SweepError("--sampler: pick a rebalancing sampler to set beside uniform, e.g. dus")
        jobs = max(1, min(2, os.cpu_count() or 1))
        train = [*DEMO_TRAIN, "--epochs", str(epochs)]
        cache = cache or default_cache()
        samplers = f"uniform,{sampler}"
        spec = build_spec({}, cache, samplers, method, str(seed), out, jobs, train, unimodal=True)
        names = ", ".join(c.name for c in spec.cells())
        err.print(f"mmrebal demo: {len(spec.cells())} runs in {out} ({names})")
        outcomes = SweepRunner(spec).run(lambda o: err.print(f"  {o.status} {o.cell.name}"))
        failed = [o for o in outcomes if o.status == "failed"]
        if failed:
            why = error_line(failed[0].log) if failed[0].log else None
            raise SweepError(f"{failed[0].cell.name} failed ({why or 'no error line'}); log: {failed[0].log}")
        report = write_report([out], out / "report.md", force=True)
        from mmrebal.report.demo import side_by_side

        table, sentence = side_by_side(report.groups)
        Console().print(table)
        Console().print(sentence, highlight=False)
        err.print(f"full report: {report.path}")
