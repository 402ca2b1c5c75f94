"""`mmrebal report`: paper-style tables and figures from run or sweep directories."""

from __future__ import annotations

from pathlib import Path

import typer


def report_command(
    dirs: list[Path] = typer.Argument(..., help="Run directories, or sweep directories holding them."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Report file (default report.md / report.csv / report.tex here)."
    ),
    split: str = typer.Option("test", help="Split of the selected-checkpoint metrics: test | val."),
    metric: str = typer.Option("acc,map,f1", help="Comma-separated metrics: acc, map, f1."),
    fmt: str = typer.Option(
        "md", "--format", help="md (full report with figures), csv or latex (main table); also on stdout."
    ),
    fig_format: str = typer.Option("png", "--fig-format", help="Figure files: png | pdf | svg (md only)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing report and its figures."),
) -> None:
    """Group runs that differ only by seed and write mean ± std tables (and figures, for md)."""
    from rich.console import Console
    from rich.markup import escape

    from mmrebal.report import FORMATS, ReportError, parse_metrics, write_report
    from mmrebal.report.tables import to_markdown

    err = Console(stderr=True, soft_wrap=True)
    try:
        metrics = parse_metrics(metric)
        suffix = FORMATS.get(fmt, ".md")  # an unknown --format is refused by write_report
        outcome = write_report(
            dirs,
            out or Path(f"report{suffix}"),
            split=split,
            metrics=metrics,
            fmt=fmt,
            force=force,
            fig_format=fig_format,
        )
    except ReportError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    for warning in outcome.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    typer.echo(to_markdown(outcome.main) if fmt == "md" else outcome.text.rstrip("\n"))
    drawn = sum(f.path is not None for f in outcome.figures)
    err.print(f"wrote {outcome.path}" + (f" and {drawn} figure(s)" if drawn else ""), highlight=False)
