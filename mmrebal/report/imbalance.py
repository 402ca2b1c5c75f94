"""The imbalance table: how far each modality sits below itself trained alone, and what a group
changes against its baseline, with a confidence interval over seeds.

Per group (test split, checkpoint selected on validation), all in accuracy points:

- ``m Acc`` and ``m gap``: modality m's own head inside the multimodal model, and that mean minus the
  mean of ``Unimodal (m)`` (m trained alone, same dataset). A negative gap is the imbalance the
  papers study: the fused model under-trains m.
- ``disc. ratio``: the discrepancy gap of DUS Fig. 5 at the end of training, the largest modality's
  cumulative score over the smallest's (1 = balanced). The score is Eq. 3's running mean of each
  step's mean true-class confidence, so steps that give a modality more rows (DUS) do not inflate it.
- ``Δ fused`` and ``Δ weak``: the group's mean minus its baseline's, with the 95 % Welch confidence
  interval and the two-sided Welch t-test p-value over seeds; ``weak`` is the modality with the
  lowest accuracy alone (else the lowest head accuracy over the table).

A group's baseline is the ``uniform`` group with the same method and every other setting equal
(options aside); a ``uniform`` group's is the ``fused`` (fused-loss-only) group of the same settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from mmrebal.report.runs import FACTOR_KEYS, Run, RunGroup, group_order
from mmrebal.report.tables import DASH, Cell, Stat, Table, stat_of, training_note

BASELINE_SAMPLER = "uniform"
FUSED_ONLY = "fused"


@dataclass(frozen=True)
class Comparison:
    """``a - b`` over seeds: the difference of means, its 95 % Welch interval and p-value."""

    diff: float
    low: float
    high: float
    p: float

    def text(self) -> str:
        return f"{self.diff:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def welch(a: list[float], b: list[float], level: float = 0.95) -> Comparison | None:
    """Welch's unequal-variance t interval and test of mean(a) - mean(b); None below 2 seeds a side
    or when both sides have no spread (no interval exists)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    sa, sb = pl.Series(a, dtype=pl.Float64), pl.Series(b, dtype=pl.Float64)
    va, vb = float(sa.var()) / len(a), float(sb.var()) / len(b)
    diff = float(sa.mean()) - float(sb.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return None
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    p = 2.0 * float(stats.t.sf(abs(diff) / se, df))
    return Comparison(diff, diff - half, diff + half, p)


def run_accuracy(run: Run, split: str, scope: str) -> float | None:
    """Percent accuracy of ``scope`` at the checkpoint selected on validation."""
    rows = run.selected_metrics(split).filter(pl.col("scope") == scope)
    return 100.0 * float(rows["acc"][0]) if rows.height and rows["acc"][0] is not None else None


def discrepancy_ratio(run: Run) -> float | None:
    """max over min of the modalities' Eq. 3 score of per-step mean confidence, at the last step."""
    steps = run.steps
    if steps is None or "confidence" not in steps.columns:
        return None
    means = steps.drop_nulls("confidence").group_by("modality").agg(pl.col("confidence").mean())
    values = means["confidence"].to_list()
    if len(values) < 2 or min(values) <= 0:
        return None
    return max(values) / min(values)


def _settings(group: RunGroup, drop: tuple[str, ...]) -> dict:
    """The comparable config without the ``drop`` factors."""
    return {k: v for k, v in group.first.comparable().items() if k.split(".")[0] not in drop}


def baseline_of(group: RunGroup, groups: list[RunGroup]) -> RunGroup | None:
    """The group this one is compared with (see the module docstring), if the report has it."""
    if group.sampler != BASELINE_SAMPLER:
        drop, method = ("sampler", "sampler_options"), group.method
    elif group.method != FUSED_ONLY:
        drop, method = FACTOR_KEYS, FUSED_ONLY
    else:
        return None
    wanted = _settings(group, drop)
    for other in groups:
        if (
            other is not group
            and other.sampler == BASELINE_SAMPLER
            and other.method == method
            and other.dataset == group.dataset
            and not other.first.config.get("sampler_options")
            and _settings(other, drop) == wanted
        ):
            return other
    return None


def accuracies(group: RunGroup, split: str, scope: str) -> list[float]:
    return [a for a in (run_accuracy(r, split, scope) for r in group.runs) if a is not None]


def mean_of(values: list[float]) -> float | None:
    return float(pl.Series(values, dtype=pl.Float64).mean()) if values else None


def alone_means(groups: list[RunGroup], split: str) -> dict[str, float]:
    """Modality -> mean accuracy of its ``Unimodal (m)`` group."""
    alone = [g for g in groups if g.unimodal_modality]
    means = {g.unimodal_modality: mean_of(accuracies(g, split, g.unimodal_modality)) for g in alone}
    return {m: a for m, a in means.items() if m and a is not None}


def weak_modality(groups: list[RunGroup], modalities: list[str], split: str) -> str | None:
    """The modality with the lowest accuracy alone; without unimodal runs, the lowest head mean."""
    alone = {m: a for m, a in alone_means(groups, split).items() if m in modalities}
    if not alone:
        heads = {m: mean_of([a for g in groups for a in accuracies(g, split, m)]) for m in modalities}
        alone = {m: a for m, a in heads.items() if a is not None}
    return min(alone, key=lambda m: alone[m]) if alone else None


def _stat_cell(values: list[float], digits: int = 2) -> Cell:
    stat: Stat | None = stat_of(values, digits)
    return Cell(stat.text(), stat) if stat else Cell()


def _comparison_cells(a: list[float], b: list[float]) -> list[Cell]:
    found = welch(a, b)
    return [Cell(found.text()), Cell(f"{found.p:.3f}")] if found else [Cell(), Cell()]


def imbalance_table(groups: list[RunGroup], dataset: str, split: str) -> Table | None:
    """The table for one dataset (None when it has no multimodal group)."""
    chosen = sorted((g for g in groups if g.dataset == dataset), key=group_order)
    multimodal = [g for g in chosen if not g.unimodal_modality]
    if not multimodal:
        return None
    scopes = {s for g in multimodal for r in g.runs for s in r.selected_metrics(split)["scope"].to_list()}
    modalities = sorted(scopes - {"fused"})
    alone = alone_means(chosen, split)
    weak = weak_modality(chosen, modalities, split)
    header = ["Method", "n", "fused Acc"]
    for m in modalities:
        header += [f"{m} Acc", f"{m} gap"]
    header += ["disc. ratio", "baseline", "Δ fused [95% CI]", "p"]
    if weak:
        header += [f"Δ {weak} [95% CI]", f"p ({weak})"]
    rows = []
    for g in multimodal:
        row = [Cell(g.label), Cell(str(len(g.runs))), _stat_cell(accuracies(g, split, "fused"))]
        for m in modalities:
            heads = accuracies(g, split, m)
            row.append(_stat_cell(heads))
            head, solo = mean_of(heads), alone.get(m)
            row.append(Cell(f"{head - solo:+.2f}") if head is not None and solo is not None else Cell())
        ratios = [x for x in (discrepancy_ratio(r) for r in g.runs) if x is not None]
        row.append(_stat_cell(ratios, digits=3))
        base = baseline_of(g, groups)
        row.append(Cell(base.label if base else DASH))
        for scope in ["fused"] + ([weak] if weak else []):
            if base is None:
                row += [Cell(), Cell()]
            else:
                row += _comparison_cells(accuracies(g, split, scope), accuracies(base, split, scope))
        rows.append(row)
    notes = [
        f"{split} split, checkpoint selected on validation; accuracy in points, mean ± std over seeds. "
        "`m Acc`: modality m's own head inside the model; `m gap`: that minus m trained alone "
        "(Unimodal (m)). `disc. ratio`: largest over smallest modality's Eq. 3 running mean of the "
        "per-step true-class confidence at the end of training (1 = balanced).",
        f"Δ: group minus its baseline (the Uniform group of the same method and settings; for a Uniform "
        f"group, Uniform/Fused), 95 % Welch interval and two-sided Welch t-test p over seeds; "
        f"{weak or 'no'} modality is the weakest alone.",
        training_note(chosen),
    ]
    return Table(f"Imbalance: {dataset}", header, rows, notes)


__all__ = ["Comparison", "baseline_of", "discrepancy_ratio", "imbalance_table", "welch"]
