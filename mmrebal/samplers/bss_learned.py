"""BSS-L — Balance-aware Sequence Sampling with the learning-based (self-paced) scheduler.

Every ``period`` epochs (from epoch 0, on the current model) the measurer gives s_cur = loss~ - sim~;
the paper's momentum update s_upd^(k+1) = mu s_upd^k + (1 - mu) s_cur^(k+1) smooths it (s_upd^0 =
s_cur^0; ``mu = 0`` is the reference code, which uses the fresh scores). Sampling weights
w = 1 - s_upd + 0.01 (> 0 since s in [-1, 1]), p = w / sum w; each epoch trains on a full
permutation drawn by weighted sampling without replacement (as ``torch.multinomial(p, N,
replacement=False)`` in the reference), in that order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from mmrebal.evaluation.scores import ScoreResult
from mmrebal.samplers import SAMPLERS
from mmrebal.samplers.base import Plan
from mmrebal.samplers.bss import BalanceScoredSampler


def spl_probabilities(scores: np.ndarray) -> np.ndarray:
    """p = w / sum w with w = 1 - s + 0.01."""
    w = 1.0 - np.asarray(scores, dtype=np.float64) + 0.01
    return w / w.sum()


def momentum_update(previous: np.ndarray | None, current: np.ndarray, mu: float) -> np.ndarray:
    """s_upd^(k+1) = mu s_upd^k + (1 - mu) s_cur^(k+1); the first update takes s_cur as is."""
    current = np.asarray(current, dtype=np.float64)
    return current.copy() if previous is None else mu * previous + (1 - mu) * current


def weighted_permutation(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation drawn by successive sampling without replacement proportional to ``p``.

    Efraimidis-Spirakis: sorting E_i / p_i ascending (E_i ~ Exp(1)) gives the same distribution as
    drawing one index at a time with probability proportional to the remaining weights.
    """
    return np.argsort(rng.standard_exponential(len(p)) / np.asarray(p, dtype=np.float64), kind="stable")


@SAMPLERS.register("bss-l")
class BSSLearnedSampler(BalanceScoredSampler):
    """Options: ``mu`` (0.0 = reference), ``period`` (1 epoch), ``loss`` (fused | reference | a modality),
    ``drop_last`` (False; the reference drops the last partial batch), ``measure`` (eval | train: the
    reference's train-mode scoring pass).
    """

    def __init__(self, *args: Any, mu: float = 0.0, period: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not 0 <= mu < 1:
            raise ValueError(f"sampler option mu={mu} must be in [0, 1)")
        if int(period) < 1:
            raise ValueError(f"sampler option period={period} must be >= 1")
        self.mu, self.period = float(mu), int(period)
        self.probs: np.ndarray | None = None

    def needs_scoring(self, epoch: int) -> bool:
        return self.score is None or epoch % self.period == 0

    def config_warnings(self) -> list[str]:
        if self.period < self.epochs or self.epochs == 1:
            return []
        return [
            f"bss-l: period {self.period} >= epochs {self.epochs}, so the weights are scored once, on the "
            "untrained model, and never updated; pass --sampler-opt period=K with K < epochs"
        ]

    def receive_scores(self, epoch: int, result: ScoreResult) -> None:
        sim, loss = self.measure(result)
        self.score = momentum_update(self.score, loss - sim, self.mu)
        self.probs = spl_probabilities(self.score)

    def plans(self, epoch: int) -> Iterator[Plan]:
        self.require_scores(epoch)
        yield from self.emit(epoch, weighted_permutation(self.probs, self.rng))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "probs": None if self.probs is None else self.probs.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.probs = None if state["probs"] is None else np.asarray(state["probs"], dtype=np.float64).copy()
