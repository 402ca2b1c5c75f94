"""BSS — Balance-aware Sequence Sampling, the measurer and the heuristic (curriculum) scheduler.

Measurer: per sample the prediction similarity (cosine of the unimodal softmax vectors; for m > 2 the
mean over modality pairs) and the training loss, each min-max normalised over the train split. The
reference code (njustkmg/IJCAI25-BSS, train-CL.py / train-SPL.py) scores in train mode with autograd
on, in split order at the training batch size; here the scores come from the shared eval-mode,
no-grad scoring pass, or with ``measure=train`` from the reference's train-mode pass (no gradient:
the values are the same). Its loss is
0.9 (CE_1 + CE_2) + 0.1 CE_fused (``loss=reference``); the default is the fused CE
(``ScoreResult.losses["fused"]``), the multimodal objective's loss of the sample.

Curriculum (``bss``): score = (1 - sim~) + loss~, ascending = balanced first; root pacing
lambda_t = min(1, sqrt((1 - lambda0^2) / T_grow * (t + 1) + lambda0^2)) with the 0-based epoch t
(reference: ``epoch + 1`` inside the root), so lambda_0 ~ 0.186 and lambda_{T_grow - 1} = 1; each
epoch trains on the first ceil(N lambda_t) samples of the order, shuffled. Scoring happens once,
before epoch 0 on the initial model (reference), or every ``rescore_every`` epochs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mmrebal.evaluation.scores import ScoreResult, prediction_similarity
from mmrebal.samplers import SAMPLERS
from mmrebal.samplers.base import Group, Plan, Sampler, SamplerSetup

TRACE_MODALITY = "all"  # samples.parquet ``modality`` of BSS rows: the scores describe the whole sample


def min_max(x: np.ndarray) -> np.ndarray:
    """(x - min) / (max - min); an all-equal vector carries no ranking information and maps to zeros."""
    x = np.asarray(x, dtype=np.float64)
    span = x.max() - x.min()
    return np.zeros_like(x) if span <= 0 else (x - x.min()) / span


def sample_loss(result: ScoreResult, modalities: Sequence[str], which: str) -> np.ndarray:
    """The measurer's loss: ``fused`` CE, a modality's CE, or the reference 0.9 sum_j CE_j + 0.1 CE_fused."""
    if which == "reference":
        return (
            0.9 * sum(np.asarray(result.losses[m], dtype=np.float64) for m in modalities)
            + 0.1 * result.losses["fused"]
        )
    if which not in result.losses:
        raise ValueError(f"sampler option loss={which!r} is not fused, reference or a scored modality")
    return np.asarray(result.losses[which], dtype=np.float64)


def root_pacing(t: int, lambda0: float = 0.1, t_grow: int = 40) -> float:
    """lambda_t of the root pacing function at 0-based epoch ``t``."""
    return min(1.0, math.sqrt((1 - lambda0**2) / t_grow * (t + 1) + lambda0**2))


class BalanceScoredSampler(Sampler):
    """What both BSS schedulers share: the measurer's normalised scores, batching and the sample trace."""

    def __init__(
        self,
        setup: SamplerSetup,
        *,
        loss: str = "fused",
        drop_last: bool = False,
        measure: str = "eval",
    ) -> None:
        super().__init__(setup)
        if loss not in ("fused", "reference", *self.modalities):
            raise ValueError(f"sampler option loss={loss!r} is not fused, reference or a modality")
        if measure not in ("eval", "train"):
            raise ValueError(f"sampler option measure={measure!r} is not one of eval, train")
        self.scores_in_train_mode = measure == "train"
        self.loss_kind = loss
        self.drop_last = bool(drop_last)
        self.similarity: np.ndarray | None = None
        self.loss: np.ndarray | None = None
        self.score: np.ndarray | None = None

    def measure(self, result: ScoreResult) -> tuple[np.ndarray, np.ndarray]:
        """Store raw similarity and loss; return their min-max normalised versions (sim~, loss~)."""
        result.check(self.modalities, self.num_samples, self.name)
        self.similarity = prediction_similarity(result.probs, self.modalities)
        self.loss = sample_loss(result, self.modalities, self.loss_kind)
        return min_max(self.similarity), min_max(self.loss)

    def subset_size(self, epoch: int) -> int:
        """Samples the epoch draws its batches from (the curriculum grows it; all by default)."""
        return self.num_samples

    def epoch_steps(self, epoch: int) -> int:
        n = self.subset_size(epoch)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def emit(self, epoch: int, sequence: np.ndarray) -> Iterator[Plan]:
        """Yield full multimodal batches over ``sequence`` in order and trace every sample's position/use."""
        stop = len(sequence) - len(sequence) % self.batch_size if self.drop_last else len(sequence)
        position = np.full(self.num_samples, -1, dtype=np.int64)
        position[sequence] = np.arange(len(sequence))
        used = np.zeros(self.num_samples, dtype=bool)
        used[sequence[:stop]] = True
        self.sample_rows.extend(
            {
                "epoch": epoch,
                "idx": i,
                "modality": TRACE_MODALITY,
                "similarity": float(self.similarity[i]),
                "loss": float(self.loss[i]),
                "score": float(self.score[i]),
                "order": int(position[i]),
                "used": bool(used[i]),
            }
            for i in range(self.num_samples)
        )
        for s in range(0, stop, self.batch_size):
            yield Plan([Group(sequence[s : min(s + self.batch_size, stop)], self.modalities, fused=True)])

    def require_scores(self, epoch: int) -> None:
        if self.score is None:
            raise RuntimeError(
                f"{self.name} needs a scoring pass before epoch {epoch}: call receive_scores() first"
            )

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        for key in ("similarity", "loss", "score"):
            value = getattr(self, key)
            state[key] = None if value is None else value.copy()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        for key in ("similarity", "loss", "score"):
            setattr(
                self, key, None if state[key] is None else np.asarray(state[key], dtype=np.float64).copy()
            )


@SAMPLERS.register("bss")
class BSSCurriculumSampler(BalanceScoredSampler):
    """Options: ``lambda0`` (0.1), ``t_grow`` (40), ``rescore_every`` (0: once before epoch 0),
    ``rounding`` (ceil | floor: the reference truncates), ``loss`` (fused | reference | a modality),
    ``drop_last`` (False; the reference drops the last partial batch), ``measure`` (eval: the shared
    eval-mode pass | train: the reference's train-mode pass), ``order`` (score: the
    measurer's ascending order | random: a random order at each scoring, an ablation that keeps the
    pacing and drops the measurer, to tell what costs or gains accuracy: fewer samples early or which).
    """

    def __init__(
        self,
        *args: Any,
        lambda0: float = 0.1,
        t_grow: int = 40,
        rescore_every: int = 0,
        rounding: str = "ceil",
        order: str = "score",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if rounding not in ("ceil", "floor"):
            raise ValueError(f"sampler option rounding={rounding!r} is not one of ceil, floor")
        if order not in ("score", "random"):
            raise ValueError(f"sampler option order={order!r} is not one of score, random")
        self.order_kind = order
        self.lambda0, self.t_grow, self.rescore_every, self.rounding = (
            float(lambda0),
            int(t_grow),
            int(rescore_every),
            rounding,
        )
        self.order: np.ndarray | None = None

    def needs_scoring(self, epoch: int) -> bool:
        return self.score is None or (self.rescore_every > 0 and epoch % self.rescore_every == 0)

    def config_warnings(self) -> list[str]:
        if self.t_grow <= self.epochs:
            return []
        share = root_pacing(self.epochs - 1, self.lambda0, self.t_grow)
        return [
            f"bss: T_grow {self.t_grow} > epochs {self.epochs}, so the curriculum never reaches the whole "
            f"train split (its last epoch trains on {share:.0%} of it); pass --sampler-opt t_grow=T with "
            "T <= epochs"
        ]

    def receive_scores(self, epoch: int, result: ScoreResult) -> None:
        sim, loss = self.measure(result)
        self.score = (1 - sim) + loss
        if self.order_kind == "random":
            self.order = self.rng.permutation(self.num_samples)
        else:
            self.order = np.argsort(self.score, kind="stable")

    def subset_size(self, epoch: int) -> int:
        n = self.num_samples * root_pacing(epoch, self.lambda0, self.t_grow)
        return min(self.num_samples, max(1, math.ceil(n - 1e-9) if self.rounding == "ceil" else int(n)))

    def plans(self, epoch: int) -> Iterator[Plan]:
        self.require_scores(epoch)
        subset = self.order[: self.subset_size(epoch)]
        yield from self.emit(epoch, self.rng.permutation(subset))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "order": None if self.order is None else self.order.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.order = None if state["order"] is None else np.asarray(state["order"], dtype=np.int64).copy()
