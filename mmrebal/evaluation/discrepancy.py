"""The cumulative modality discrepancy score of DUS, Eq. (3).

Per iteration t a modality's discrepancy is s_t = sum over its batch of softmax(z)[y] (the OGM score;
a sum, so the batch size enters it). Eq. (3) smooths it into a running mean over iterations:
s^_1 = s_1 and s^_t = ((t-1)/t) s^_{t-1} + (1/t) s_t. Each modality keeps its own t, so a step in
which a modality has no rows does not dilute its average.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SCORE_KINDS = ("sum", "mean")


def step_discrepancy(confidence_sum: float, batch_size: int, kind: str = "sum") -> float:
    """s_t of one modality: the confidence sum (paper), or per-sample mean (``kind="mean"``)."""
    if kind == "sum":
        return float(confidence_sum)
    if kind == "mean":
        return float(confidence_sum) / max(int(batch_size), 1)
    raise ValueError(f"discrepancy score {kind!r} is not one of {SCORE_KINDS}; pass score=sum or score=mean")


class CumulativeScore:
    """Eq. (3) per modality; ``reset()`` starts a new average (e.g. per epoch)."""

    def __init__(self, modalities: Sequence[str]) -> None:
        self.modalities = tuple(modalities)
        self.reset()

    def reset(self) -> None:
        self.value: dict[str, float] = {m: 0.0 for m in self.modalities}
        self.count: dict[str, int] = {m: 0 for m in self.modalities}

    def update(self, scores: Mapping[str, float]) -> dict[str, float]:
        """Fold one iteration's s_t into s^_t for the modalities present; returns all s^_t."""
        for m, s in scores.items():
            t = self.count[m] + 1
            self.value[m] = ((t - 1) / t) * self.value[m] + (1 / t) * float(s)
            self.count[m] = t
        return dict(self.value)

    @property
    def ready(self) -> bool:
        """True once every modality has at least one score."""
        return all(c > 0 for c in self.count.values())

    def state_dict(self) -> dict[str, Any]:
        return {"value": dict(self.value), "count": dict(self.count)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.value = {m: float(state["value"][m]) for m in self.modalities}
        self.count = {m: int(state["count"][m]) for m in self.modalities}
