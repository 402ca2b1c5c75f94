"""The report's figures (DUS paper, Figures 4-5, and the Remix/BSS data-use plots) as PNG, PDF or SVG.

Built on ``matplotlib.figure.Figure`` directly, without pyplot, so nothing depends on a display or
on global backend state. A curve of a group is the mean over its seeds at each step (or epoch), with
the seeds' min-max range as a band; panels that compare groups share their axes and one legend. Each
builder returns a :class:`FigureResult`; when no run carries the data, or the data does not mean
what the figure claims for that sampler, it says why instead of drawing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mmrebal.report.runs import Run, RunGroup
from mmrebal.storage import atomic_path


@dataclass(frozen=True)
class FigureResult:
    title: str
    path: Path | None  # None: skipped
    note: str  # the caption, or why the figure was skipped


FIG_FORMATS = ("png", "pdf", "svg")
DPI = 200  # raster output (PNG) resolution; PDF and SVG are vector


def _save(fig: Figure, path: Path) -> None:
    """Atomic write in the format of ``path``'s suffix: a reader never sees half a file."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=DPI, bbox_inches="tight")


def _panels(count: int) -> tuple[Figure, list[Axes]]:
    """One panel per group; the panels share both axes so that groups compare at a glance."""
    cols = min(count, 3)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(4.8 * cols, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True).ravel().tolist()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def _shared_legend(fig: Figure, axes: list[Axes], title: str) -> None:
    """One legend for the whole figure, outside the panels (never over the data)."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    fig.legend(list(entries.values()), list(entries), title=title, loc="outside right upper")


def _band(ax: Axes, frames: list[pl.DataFrame], x: str, y: str, **style: object) -> None:
    """The seeds' mean of ``y`` over ``x`` as a line, their min-max range as a band around it."""
    stats = (
        pl.concat(frames, how="vertical_relaxed")
        .group_by(x)
        .agg(pl.col(y).mean().alias("mean"), pl.col(y).min().alias("lo"), pl.col(y).max().alias("hi"))
        .sort(x)
    )
    (line,) = ax.plot(stats[x], stats["mean"], linewidth=1.2, **style)
    if len(frames) > 1:
        ax.fill_between(stats[x], stats["lo"], stats["hi"], color=line.get_color(), alpha=0.2, linewidth=0)


def _seed_mean(frames: list[pl.DataFrame], keys: list[str], value: str) -> pl.DataFrame:
    return pl.concat(frames, how="vertical_relaxed").group_by(keys).agg(pl.col(value).mean()).sort(keys)


def _step_frames(group: RunGroup, column: str) -> list[tuple[Run, pl.DataFrame]]:
    """Each run's ``step, modality, column`` rows where ``column`` exists and is not null."""
    frames = []
    for run in group.runs:
        steps = run.steps
        if steps is not None and column in steps.columns:
            rows = steps.select("step", "modality", column).drop_nulls(column)
            if rows.height:
                frames.append((run, rows))
    return frames


def _title(group: RunGroup) -> str:
    return f"{group.label} · {group.dataset} (n={len(group.runs)})"


def accuracy_figure(groups: list[RunGroup], path: Path) -> FigureResult:
    """Validation accuracy of the fused prediction and of each modality's head over the epochs, one
    panel per multimodal group: where a modality stalls while the other carries the fused loss."""
    title = "Validation accuracy per modality over epochs"
    chosen = []
    for group in (g for g in groups if not g.unimodal_modality):
        frames = [
            m.filter(pl.col("split") == "val").select("epoch", "scope", "acc")
            for m in (r.metrics for r in group.runs)
            if m is not None
        ]
        if any(f.height for f in frames):
            chosen.append((group, [f for f in frames if f.height]))
    if not chosen:
        return FigureResult(title, None, "skipped: no multimodal run recorded validation metrics")
    fig, axes = _panels(len(chosen))
    for ax, (group, frames) in zip(axes, chosen, strict=True):
        scopes = sorted(
            {s for f in frames for s in f["scope"].unique().to_list()}, key=lambda s: (s != "fused", s)
        )
        for j, scope in enumerate(scopes):
            mine = [f.filter(pl.col("scope") == scope).with_columns(pl.col("acc") * 100) for f in frames]
            _band(ax, mine, "epoch", "acc", color=f"C{j}", label=scope)
        ax.set(title=_title(group), xlabel="epoch", ylabel="val accuracy (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _shared_legend(fig, axes, "prediction")
    _save(fig, path)
    note = "fused prediction and each modality's own head on val, mean over seeds (band: min-max)"
    return FigureResult(title, path, note)


def batch_size_figure(groups: list[RunGroup], path: Path) -> FigureResult:
    """Per-modality batch size over training for DUS runs (DUS paper, Figure 4)."""
    title = "Batch size per modality (DUS)"
    chosen = [
        (g, f) for g in groups if g.sampler.startswith("dus") for f in [_step_frames(g, "batch_size")] if f
    ]
    if not chosen:
        return FigureResult(title, None, "skipped: no DUS run recorded `batch_size` in steps.parquet")
    fig, axes = _panels(len(chosen))
    for ax, (group, frames) in zip(axes, chosen, strict=True):
        modalities = sorted({m for _, f in frames for m in f["modality"].unique().to_list()})
        for j, modality in enumerate(modalities):
            mine = [f.filter(pl.col("modality") == modality) for _, f in frames]
            _band(ax, [f for f in mine if f.height], "step", "batch_size", color=f"C{j}", label=modality)
        ax.set(title=_title(group), xlabel="training step", ylabel="batch size (samples)")
    _shared_legend(fig, axes, "modality")
    _save(fig, path)
    note = "samples of each modality per optimisation step, mean over seeds (band: min-max over seeds)"
    return FigureResult(title, path, note)


def discrepancy_figure(groups: list[RunGroup], path: Path) -> FigureResult:
    """Cumulative discrepancy per modality with the gap between modalities shaded (DUS paper, Figure 5)."""
    title = "Cumulative discrepancy per modality"
    recorded = [(g, f) for g in groups for f in [_step_frames(g, "cum_discrepancy")] if f]
    # The score sums confidences over a modality's rows, so it compares modalities only where every
    # step trains every modality (Remix's modality-pure steps make the curves count rows instead).
    chosen = [(g, f) for g, f in recorded if all(_every_step_has_every_modality(rows) for _, rows in f)]
    if not chosen:
        why = "no run recorded `cum_discrepancy` in steps.parquet" if not recorded else (
            "every run with it has steps that train only some modalities, where the summed score "
            "measures rows, not balance"
        )  # fmt: skip
        return FigureResult(title, None, f"skipped: {why}")
    fig, axes = _panels(len(chosen))
    for ax, (group, frames) in zip(axes, chosen, strict=True):
        curve = _seed_mean([f for _, f in frames], ["step", "modality"], "cum_discrepancy")
        wide = curve.pivot(on="modality", index="step", values="cum_discrepancy").sort("step").drop_nulls()
        modalities = sorted(c for c in wide.columns if c != "step")
        for modality in modalities:
            ax.plot(wide["step"], wide[modality], label=modality, linewidth=1.2)
        if len(modalities) > 1:
            low = wide.select(pl.min_horizontal(modalities)).to_series()
            high = wide.select(pl.max_horizontal(modalities)).to_series()
            ax.fill_between(wide["step"], low, high, alpha=0.2, color="grey", label="gap")
        ax.set(title=_title(group), xlabel="training step", ylabel="cumulative discrepancy")
    _shared_legend(fig, axes, "modality")
    _save(fig, path)
    note = "Eq. 3 of DUS over the per-step true-class confidence sums, mean over seeds; shaded: gap"
    return FigureResult(title, path, note)


def _every_step_has_every_modality(rows: pl.DataFrame) -> bool:
    per_step = rows.group_by("step").agg(pl.col("modality").n_unique().alias("n"))
    return bool((per_step["n"] == rows["modality"].n_unique()).all())


def _remix_shares(run: Run) -> pl.DataFrame | None:
    """``epoch, modality, share`` (percent of the epoch's scored samples assigned to each modality).

    ``assigned`` is either the modality a sample was assigned to (text), or, with one row per
    sample and modality, whether it was assigned to that row's modality (bool).
    """
    samples = run.samples
    if samples is None or "assigned" not in samples.columns:
        return None
    total = samples.group_by("epoch").agg(pl.col("idx").n_unique().alias("total"))
    if samples.schema["assigned"] == pl.Boolean:
        hits = samples.filter(pl.col("assigned")).group_by("epoch", "modality")
    else:
        hits = (
            samples.drop_nulls("assigned")
            .unique(["epoch", "idx"])
            .with_columns(pl.col("assigned").cast(pl.Utf8).alias("modality"))
            .group_by("epoch", "modality")
        )
    counts = hits.agg(pl.col("idx").n_unique().alias("count")).join(total, on="epoch")
    shares = counts.select("epoch", "modality", (100.0 * pl.col("count") / pl.col("total")).alias("share"))
    return shares if shares.height else None


def _bss_used(run: Run) -> pl.DataFrame | None:
    """``epoch, used`` (percent of the epoch's scored samples trained on)."""
    samples = run.samples
    if samples is None or "used" not in samples.columns:
        return None
    samples = samples.drop_nulls("used")  # every run has the column; only BSS runs fill it
    per_sample = samples.group_by("epoch", "idx").agg(pl.col("used").cast(pl.Boolean).any())
    used = per_sample.group_by("epoch").agg((100.0 * pl.col("used").mean()).alias("used"))
    return used if used.height else None


def _per_run(group: RunGroup, extract: Callable[[Run], pl.DataFrame | None]) -> list[pl.DataFrame]:
    return [f for f in (extract(run) for run in group.runs) if f is not None]


def remix_figure(groups: list[RunGroup], path: Path) -> FigureResult:
    """Share of the train samples Remix assigned to each modality, per epoch (stacked bars)."""
    title = "Remix assignment share per modality"
    chosen = [(g, f) for g in groups for f in [_per_run(g, _remix_shares)] if f]
    if not chosen:
        return FigureResult(title, None, "skipped: no run recorded `assigned` in samples.parquet")
    fig, axes = _panels(len(chosen))
    for ax, (group, frames) in zip(axes, chosen, strict=True):
        shares = _seed_mean(frames, ["epoch", "modality"], "share")
        bottom: dict[int, float] = {}
        for modality in sorted(shares["modality"].unique().to_list()):
            rows = shares.filter(pl.col("modality") == modality)
            epochs, values = rows["epoch"].to_list(), rows["share"].to_list()
            base = [bottom.get(e, 0.0) for e in epochs]
            ax.bar(epochs, values, bottom=base, label=modality, width=0.8)
            for e, v in zip(epochs, values, strict=True):
                bottom[e] = bottom.get(e, 0.0) + v
        ax.set(title=_title(group), xlabel="epoch", ylabel="assigned share (% of train samples)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _shared_legend(fig, axes, "modality")
    _save(fig, path)
    return FigureResult(title, path, "which modality each train sample was assigned to, mean over seeds")


def bss_figure(groups: list[RunGroup], path: Path) -> FigureResult:
    """Fraction of the train data BSS trained on per epoch, one line per group."""
    title = "BSS fraction of data used"
    chosen = [(g, f) for g in groups for f in [_per_run(g, _bss_used)] if f]
    if not chosen:
        return FigureResult(title, None, "skipped: no run recorded `used` in samples.parquet")
    fig = Figure(figsize=(6.0, 3.8), layout="constrained")
    ax = fig.subplots()
    for group, frames in chosen:
        _band(ax, frames, "epoch", "used", marker="o", label=f"{group.label} · {group.dataset}")
    ax.set(xlabel="epoch", ylabel="data used (% of train samples)", ylim=(0, 105))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _shared_legend(fig, [ax], "group")
    _save(fig, path)
    note = "share of the scored train samples trained on each epoch, mean over seeds (band: min-max)"
    return FigureResult(title, path, note)


FIGURES: dict[str, Callable[[list[RunGroup], Path], FigureResult]] = {
    "accuracy": accuracy_figure,
    "batch-size": batch_size_figure,
    "discrepancy": discrepancy_figure,
    "remix-assignment": remix_figure,
    "bss-used": bss_figure,
}


def figure_paths(directory: Path, stem: str, fmt: str = "png") -> list[Path]:
    """Where :func:`write_figures` may write: ``<stem>-<name>.<fmt>`` in ``directory``."""
    return [directory / f"{stem}-{name}.{fmt}" for name in FIGURES]


def write_figures(groups: list[RunGroup], directory: Path, stem: str, fmt: str = "png") -> list[FigureResult]:
    """Every figure in ``directory`` (next to the markdown), or the reason it is left out."""
    paths = figure_paths(directory, stem, fmt)
    return [build(groups, path) for build, path in zip(FIGURES.values(), paths, strict=True)]
