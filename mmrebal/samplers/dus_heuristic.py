"""DUS without a learned policy: the heuristic schedule (DUS-H) and the "DUS w/o RL" ablation (DUS-DS)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mmrebal.evaluation.discrepancy import CumulativeScore, step_discrepancy
from mmrebal.samplers import SAMPLERS
from mmrebal.samplers.base import StepFeedback, check_choice
from mmrebal.samplers.dus import ProportionalBatchSampler, UnimodalBatchSampler


def heuristic_size(
    epoch: int,
    epochs: int,
    batch_size: int,
    beta: float = 0.5,
    alpha: float | None = None,
    indexing: str = "paper",
) -> int:
    """f(T) = round(beta * e^(alpha T) * N_B), the dominant modality's batch size in (0-based) ``epoch``.

    ``indexing="paper"``: T = epoch + 1 (Algorithm 1 counts epochs from 1) and alpha = ln(1/beta) / E,
    so f reaches N_B exactly at the last epoch and starts at beta^((E-1)/E) N_B (32 for N_B = 64,
    E >= 45). ``indexing="endpoints"``: T = epoch and alpha = ln(1/beta) / (E - 1), so f is exactly
    beta N_B in the first epoch and N_B in the last. An explicit ``alpha`` overrides either default.
    """
    if indexing == "paper":
        t, a = epoch + 1, math.log(1 / beta) / epochs
    elif indexing == "endpoints":
        t, a = epoch, math.log(1 / beta) / max(epochs - 1, 1)
    else:
        raise ValueError(f"sampler option indexing={indexing!r} is not one of paper, endpoints")
    if alpha is not None:
        a = alpha
    return int(min(batch_size, max(1, math.floor(beta * math.exp(a * t) * batch_size + 0.5))))


@SAMPLERS.register("dus-h")
class DUSHeuristicSampler(UnimodalBatchSampler):
    """The dominant modality gets f(T) rows per step, every other modality keeps N_B.

    Options: ``beta`` (0.5), ``alpha`` (default ln(1/beta)/E), ``indexing`` (paper | endpoints, see
    :func:`heuristic_size`), ``dominant`` (auto, or a modality name to fix it), ``dominance``
    (mean: the highest cumulative per-row confidence, Eq. 3 over s_t / |B^(j)| — the sum score
    would crown whichever modality this sampler itself gave more rows | score: the sampler's
    ``score`` statistic, the paper's sum by default), ``decide`` (step: re-decided after every
    step | epoch: at every epoch start | first: once, after the run's first step). Until the first
    feedback no modality is dominant and all get N_B rows.
    """

    def __init__(
        self,
        *args: Any,
        beta: float = 0.5,
        alpha: float | None = None,
        indexing: str = "paper",
        dominant: str = "auto",
        dominance: str = "mean",
        decide: str = "step",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not 0 < beta <= 1:
            raise ValueError(f"sampler option beta={beta} must be in (0, 1]")
        self.beta, self.alpha = float(beta), None if alpha is None else float(alpha)
        self.indexing = check_choice("indexing", indexing, ("paper", "endpoints"))
        self.dominance = check_choice("dominance", dominance, ("mean", "score"))
        self.decide = check_choice("decide", decide, ("step", "epoch", "first"))
        if dominant != "auto":
            check_choice("dominant", dominant, self.modalities)
        self.fixed = dominant != "auto"
        self.dominant: str | None = dominant if self.fixed else None
        self.mean_cum = CumulativeScore(self.modalities)
        self.latest_mean = {m: 0.0 for m in self.modalities}
        self.epoch = 0
        self.sizes = {m: self.batch_size for m in self.modalities}

    def dominance_scores(self) -> np.ndarray:
        """What "dominant" compares: per-row confidences (``dominance=mean``) or :meth:`scores`."""
        if self.dominance == "score":
            return self.scores()
        source = self.mean_cum.value if self.cumulative else self.latest_mean
        return np.array([source[m] for m in self.modalities], dtype=np.float64)

    def _apply_schedule(self) -> None:
        self.sizes = {m: self.batch_size for m in self.modalities}
        if self.dominant is not None:
            f = heuristic_size(self.epoch, self.epochs, self.batch_size, self.beta, self.alpha, self.indexing)
            self.sizes[self.dominant] = f

    def _pick_dominant(self) -> None:
        if not self.fixed and self.mean_cum.ready:
            self.dominant = self.modalities[int(np.argmax(self.dominance_scores()))]

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.decide == "epoch":
            self._pick_dominant()
        if self.cs_reset == "epoch":
            self.mean_cum.reset()
        self._apply_schedule()

    def after_feedback(self, fb: StepFeedback) -> None:
        means = {
            m: step_discrepancy(fb.confidence_sum[m], fb.batch_size[m], "mean")
            for m in self.modalities
            if fb.batch_size.get(m, 0) > 0
        }
        self.latest_mean.update(means)
        self.mean_cum.update(means)
        if self.decide == "step" or self.dominant is None:
            self._pick_dominant()
            self._apply_schedule()

    def trace_extras(self, modality: str) -> dict[str, Any]:
        return {"dominant": modality == self.dominant}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "dominant": self.dominant,
            "epoch": self.epoch,
            "mean_cum": self.mean_cum.state_dict(),
            "latest_mean": dict(self.latest_mean),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.dominant, self.epoch = state["dominant"], int(state["epoch"])
        self.mean_cum.load_state_dict(state["mean_cum"])
        self.latest_mean = dict(state["latest_mean"])


def inverse_proportions(scores: np.ndarray) -> np.ndarray:
    """a~^(j) = (S - s^(j)) / ((m - 1) S), S = sum_k s^(k): the weaker modality gets more.

    For two modalities this swaps the score shares (a~_audio = s_video / S). All-zero scores give N_B/m.
    """
    s = np.asarray(scores, dtype=np.float64)
    total = s.sum()
    if total <= 0:
        return np.full(len(s), 1.0 / len(s))
    return (total - s) / ((len(s) - 1) * total)


@SAMPLERS.register("dus-ds")
class DUSDiscrepancySampler(ProportionalBatchSampler):
    """ "DUS w/o RL": proportions straight from the discrepancy scores via :func:`inverse_proportions`.

    Options: ``update`` (epoch: recomputed after each epoch, Algorithm 1's cadence | step), plus
    ``cumulative=False`` for "w/o CS" (the latest s_t instead of s^). Starts at N_B/m each.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.proportions = np.full(len(self.modalities), 1.0 / len(self.modalities))

    def _recompute(self) -> None:
        if self.cum.ready:
            self.proportions = inverse_proportions(self.scores())
            self.sizes = self.allocate_sizes(self.proportions)

    def after_feedback(self, fb: StepFeedback) -> None:
        if self.update == "step":
            self._recompute()

    def end_epoch(self, epoch: int) -> None:
        if self.update == "epoch":
            self._recompute()

    def trace_extras(self, modality: str) -> dict[str, Any]:
        return {"policy_prob": float(self.proportions[self.modalities.index(modality)])}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "proportions": self.proportions.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.proportions = np.asarray(state["proportions"], dtype=np.float64).copy()
