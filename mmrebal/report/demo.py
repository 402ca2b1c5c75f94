"""The demo's side-by-side view: the uniform baseline beside one rebalancing sampler (one seed)."""

from __future__ import annotations

from rich.table import Table

from mmrebal.report.imbalance import BASELINE_SAMPLER, accuracies, alone_means, mean_of, weak_modality
from mmrebal.report.runs import RunGroup

SPLIT = "test"


def _acc(group: RunGroup, scope: str) -> float | None:
    return mean_of(accuracies(group, SPLIT, scope))


def side_by_side(groups: list[RunGroup]) -> tuple[Table, str]:
    """A table of fused and per-modality test accuracy and each modality's gap to itself alone, and
    one sentence saying what the sampler changed against the baseline, then the sampler run's warnings."""
    multimodal = [g for g in groups if not g.unimodal_modality]
    base = next(g for g in multimodal if g.sampler == BASELINE_SAMPLER)
    other = next(g for g in multimodal if g.sampler != BASELINE_SAMPLER)
    alone = alone_means(groups, SPLIT)
    modalities = sorted(alone)
    table = Table(title=f"test accuracy (%), seed {base.seeds[0]}")
    for column in ["", "fused", *(f"{m} (gap to alone)" for m in modalities)]:
        table.add_column(column, justify="left" if not column else "right")
    table.add_row("alone", "", *(f"{alone[m]:.2f}" for m in modalities))
    for group in (base, other):
        cells = [f"{_acc(group, 'fused'):.2f}"]
        for m in modalities:
            head = _acc(group, m)
            cells.append(f"{head:.2f} ({head - alone[m]:+.2f})" if head is not None else "–")
        table.add_row(group.label, *cells)
    weak = weak_modality(groups, modalities, SPLIT) or modalities[-1]
    fused = (_acc(base, "fused"), _acc(other, "fused"))
    head = (_acc(base, weak), _acc(other, weak))
    sentence = (
        f"{other.label} against {base.label}: the {weak} head (the weakest modality alone) goes from "
        f"{head[0]:.2f} to {head[1]:.2f} ({head[1] - head[0]:+.2f} points), its gap to {weak} alone from "
        f"{head[0] - alone[weak]:+.2f} to {head[1] - alone[weak]:+.2f}; fused accuracy from {fused[0]:.2f} "
        f"to {fused[1]:.2f} ({fused[1] - fused[0]:+.2f}). One seed and a short schedule: a demonstration, "
        "not evidence (docs/results-avmnist.md has the study over seeds)."
    )
    # what the trainer warned about the sampler's run changes what the comparison means (Remix's loss)
    return table, sentence + "".join(f"\n⚠ {line}" for line in other.run_warnings)
