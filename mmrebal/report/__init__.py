"""Paper-style tables and figures from run directories alone (their config, summary and Parquet traces).

``write_report`` is what ``mmrebal report`` runs: find finished runs, group them by config minus
seed, aggregate the checkpoint selected on validation, and write markdown (with PNG figures next to
it) or the main table as CSV / LaTeX.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmrebal.report.ensemble import unimodal_ensembles
from mmrebal.report.figures import FIG_FORMATS, FigureResult, figure_paths, write_figures
from mmrebal.report.imbalance import imbalance_table
from mmrebal.report.load import load_runs
from mmrebal.report.runs import ReportError, RunGroup, find_runs, group_runs
from mmrebal.report.tables import (
    METRIC_COLUMNS,
    Table,
    config_table,
    cost_table,
    main_table,
    modality_table,
    to_csv,
    to_latex,
)
from mmrebal.report.tables import to_markdown as table_markdown
from mmrebal.storage import atomic_write_bytes

FORMATS = {"md": ".md", "csv": ".csv", "latex": ".tex"}
SPLITS = ("test", "val")  # the splits whose selected-checkpoint rows metrics.parquet holds

__all__ = ["FORMATS", "ReportError", "ReportOutcome", "load_runs", "parse_metrics", "write_report"]


@dataclass
class ReportOutcome:
    path: Path
    main: Table
    groups: list[RunGroup]
    warnings: list[str]
    figures: list[FigureResult]
    text: str  # what ``path`` holds


def check_choice(flag: str, value: str, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        from mmrebal.names import unknown_message

        raise ReportError(unknown_message("value", value, list(allowed), flag))


def parse_metrics(text: str) -> list[str]:
    """``"acc,map,f1"`` -> metrics.parquet columns, refusing unknown names with the known ones."""
    columns: list[str] = []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        if name not in METRIC_COLUMNS:
            raise ReportError(
                f"--metric {name!r} is unknown; choose from {', '.join(sorted(METRIC_COLUMNS))}"
            )
        if METRIC_COLUMNS[name] not in columns:
            columns.append(METRIC_COLUMNS[name])
    if not columns:
        raise ReportError("--metric is empty; pass e.g. --metric acc,map")
    return columns


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode())


def _markdown(
    sources: list[Path],
    split: str,
    tables: list[Table],
    groups: list[RunGroup],
    warnings: list[str],
    figures: list[FigureResult],
    out_dir: Path,
) -> str:
    runs = sum(len(g.runs) for g in groups)
    lines = [
        "# mmrebal report",
        "",
        f"{runs} finished runs in {len(groups)} groups from {', '.join(f'`{s}`' for s in sources)}; "
        f"split `{split}`. Runs whose configs differ only by seed form a group.",
        "",
        "Rows are named `Sampler/Method` as the papers write them: the sampler decides which samples of "
        "which modality each step sees (`Uniform` = plain shuffled batches), the method how the model "
        "learns from them (`Joint` = one fused loss), so `Uniform/Joint` is the usual baseline; "
        "`Unimodal (m)` trains modality m alone; `Unimodal ensemble` averages the unimodal runs' "
        "probabilities.",
        "",
    ]
    if warnings:
        lines += ["## Warnings", "", *[f"- {w}" for w in warnings], ""]
    lines += [table_markdown(t) for t in tables]
    lines += ["## Figures", ""]
    for fig in figures:
        if fig.path is None:
            lines += [f"**{fig.title}**: _{fig.note}_", ""]
        else:
            lines += [
                f"![{fig.title}]({fig.path.relative_to(out_dir)})",
                "",
                f"_{fig.title}: {fig.note}._",
                "",
            ]
    lines += ["## Runs", "", "| Group | Dataset | Seeds | Run directories |", "|:---|:---|:---|:---|"]
    for g in groups:
        seeds = ", ".join("?" if s is None else str(s) for s in g.seeds)
        dirs = "<br>".join(f"`{r.path}`" for r in g.runs)
        lines.append(f"| {g.label} | {g.dataset} | {seeds} | {dirs} |")
    return "\n".join(lines) + "\n"


def write_report(
    sources: list[Path],
    out: Path,
    split: str = "test",
    metrics: list[str] | None = None,
    fmt: str = "md",
    *,
    force: bool = False,
    fig_format: str = "png",
) -> ReportOutcome:
    """Write the report for every finished run at or below ``sources``; see the module docstring.

    Options are checked before anything is read, and an existing report (or figure) is replaced
    only with ``force``."""
    check_choice("--format", fmt, list(FORMATS))
    check_choice("--split", split, SPLITS)
    check_choice("--fig-format", fig_format, FIG_FORMATS)
    targets = [out] + (figure_paths(out.parent, out.stem, fig_format) if fmt == "md" else [])
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        raise ReportError(f"{existing[0]} exists; pass --force to replace it (or --out elsewhere)")
    metrics = metrics or parse_metrics("acc,map,f1")
    runs, warnings = find_runs(sources)
    for run in runs:
        if not run.selected_metrics(split).height:
            warnings.append(f"{run.path / 'metrics.parquet'}: no selected rows for split {split!r}; left out")
    groups, group_warnings = group_runs(runs)
    warnings += group_warnings
    references, ensemble_warnings = unimodal_ensembles(groups, split, metrics)
    warnings += ensemble_warnings
    main = main_table(groups, split, metrics, references)
    figures: list[FigureResult] = []
    if fmt == "csv":
        text = to_csv(main)
    elif fmt == "latex":
        text = to_latex(main)
    else:
        datasets = sorted({g.dataset for g in groups})
        tables = [main] + [modality_table(groups, d, split, metrics) for d in datasets]
        tables += [t for t in (imbalance_table(groups, d, split) for d in datasets) if t is not None]
        tables += [cost_table(groups), config_table(groups)]
        out.parent.mkdir(parents=True, exist_ok=True)
        figures = write_figures(groups, out.parent, out.stem, fig_format)
        text = _markdown(sources, split, tables, groups, warnings, figures, out.parent)
    _atomic_write(out, text)
    return ReportOutcome(out, main, groups, warnings, figures, text)
