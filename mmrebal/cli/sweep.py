"""`mmrebal sweep`: run a sampler x method x seed grid of `mmrebal train` cells, resumably."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from mmrebal.cluster import ClusterSweep
    from mmrebal.sweep import SweepSpec


def sweep_command(
    ctx: typer.Context,
    cache: Path | None = typer.Option(
        None, help="HDF5 cache every cell trains on (default: train's default)."
    ),
    samplers: str | None = typer.Option(
        None,
        help="Comma-separated samplers, each NAME or NAME:KEY=VALUE[:...], e.g. uniform,remix:warmup=10.",
    ),
    methods: str | None = typer.Option(
        None,
        help="Comma-separated methods (default joint), each NAME or NAME:KEY=VALUE, e.g. ogm-ge:alpha=0.3.",
    ),
    seeds: str | None = typer.Option(None, help="Comma-separated seeds (default 0)."),
    out: Path | None = typer.Option(
        None, help="Sweep directory; cells go to OUT/<sampler>-<method>-s<seed>."
    ),
    jobs: int | None = typer.Option(None, help="Cells trained at once (default 1, or one per --gpus)."),
    gpus: str | None = typer.Option(
        None, help="Comma-separated CUDA device ids; each running cell gets one (CUDA_VISIBLE_DEVICES)."
    ),
    unimodal: bool | None = typer.Option(
        None,
        "--unimodal/--no-unimodal",
        help="Also train each modality of the cache alone (Uniform/Unimodal cells per seed): the reference "
        "rows, and their late-fusion ensemble, of the report.",
    ),
    grid: Path | None = typer.Option(None, help="YAML grid file; command-line values override it."),
    cluster: str | None = typer.Option(
        None, help="Submit each cell as a job instead: slurm, or local (submitit's local executor)."
    ),
    cluster_opt: list[str] = typer.Option(
        [], "--cluster-opt", help="submitit parameter KEY=VALUE, e.g. slurm_partition=gpu (repeatable)."
    ),
    train_opt: list[str] = typer.Option(
        [], "--train-opt", help='Train flags for every cell, e.g. --train-opt "--epochs 2" (repeatable).'
    ),
) -> None:
    """Train every cell of the grid; finished cells are skipped, interrupted ones resumed.

    Train options may also follow `--`: `mmrebal sweep --samplers uniform,dus -- --preset cpu --epochs 2`.
    Exits non-zero when any cell failed (its log is `<cell>/train.log`).

    With --cluster each unfinished cell is one job (default one GPU, 8 CPUs, 24 h each); the command
    waits for them, and Ctrl-C cancels the ones left.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mmrebal.sweep import SweepRunner, build_spec, error_line, parse_train_opts, read_grid, running_line

    err = Console(stderr=True, soft_wrap=True)
    try:
        spec = build_spec(
            read_grid(grid) if grid else {},
            cache,
            samplers,
            methods,
            seeds,
            out,
            jobs,
            parse_train_opts(train_opt) + list(ctx.args),
            gpus,
            unimodal,
        )
        runner = SweepRunner(spec) if cluster is None else cluster_sweep(spec, cluster, cluster_opt, gpus)
    except ValueError as exc:  # a SweepError, a bad --cluster-opt or an unknown --cluster
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None

    # A `kill` of the sweep stops its cells too, instead of leaving them training unattended.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    counts = {"skipped": 0, "finished": 0, "failed": 0}
    cells = spec.cells()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err) as progress:
        task = progress.add_task("cells", total=len(cells))
        live = progress.add_task(running_line(spec, []), total=None)
        finished = threading.Event()

        def follow() -> None:  # the running cells' epochs, read from their logs every second
            while not finished.wait(1.0):
                progress.update(live, description=escape(running_line(spec, runner.running())))

        def show(outcome) -> None:
            counts[outcome.status] += 1
            left = len(cells) - sum(counts.values())
            progress.update(
                task,
                advance=1,
                description=f"done {counts['finished']} skipped {counts['skipped']} "
                f"failed {counts['failed']} left {left}",
            )
            if outcome.status == "failed":
                where = escape(str(outcome.log))
                progress.console.print(
                    f"[red]failed[/red] {outcome.cell.name} (exit {outcome.returncode}); log: {where}"
                )
                line = error_line(outcome.log) if outcome.log else None
                if line:
                    progress.console.print(f"  {escape(line)}", highlight=False)
            elif outcome.status == "finished":
                how = "resumed and finished" if outcome.resumed else "finished"
                progress.console.print(f"{how} {outcome.cell.name}")

        threading.Thread(target=follow, daemon=True).start()
        try:
            runner.run(show)
        except KeyboardInterrupt:
            err.print("interrupted: running cells stopped; re-run the same command to resume")
            raise typer.Exit(130) from None
        finally:
            finished.set()
    done, skipped, failed = counts["finished"], counts["skipped"], counts["failed"]
    err.print(f"{spec.out}: {done} trained, {skipped} already finished, {failed} failed", highlight=False)
    if counts["failed"]:
        raise typer.Exit(1)


def cluster_sweep(spec: SweepSpec, cluster: str, options: list[str], gpus: str | None) -> ClusterSweep:
    """The submitit-backed runner; ``--gpus`` belongs to local sweeps (a cluster gives jobs their GPU)."""
    from mmrebal.cluster import ClusterSweep
    from mmrebal.engine.config import parse_options

    if gpus:
        raise ValueError("--gpus is for local sweeps; on a cluster use --cluster-opt gpus_per_node=N")
    return ClusterSweep(spec, cluster, parse_options(options, "--cluster-opt"))


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
