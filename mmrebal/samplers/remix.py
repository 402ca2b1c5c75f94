"""Remix — Data Remixing (Improving Multimodal Learning Balance and Sufficiency through Data Remixing).

Warm-up: E_w epochs of shuffled full multimodal batches with loss CE(fused) + 0.5 sum_j CE(j).
Afterwards, before every epoch, a no-grad scoring pass gives each sample's unimodal predictions;
the sample is kept only for the modality whose prediction is closest to uniform (lowest
KL(p || U), the weakest), and the epoch trains on modality-pure batches (the other modalities
masked to zero at feature level) with loss CE(fused) + gamma CE(that modality). Every sample is
used exactly once per epoch.

Reference-code facts (MatthewMaxy/Remix_ICML2025, train.py) behind the defaults: warm-up 10 epochs
with weights 0.5; gamma = 1 for both modalities; ties (KL_audio == KL_video) go to video, the
second modality, hence ``tie="last"``; the video subset trains before the audio subset, each
shuffled and batched without dropping the last batch, hence the default sequence = modalities in
reverse order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from mmrebal.evaluation.scores import ScoreResult, kl_to_uniform
from mmrebal.samplers import SAMPLERS
from mmrebal.samplers.base import Group, Plan, Sampler, SamplerSetup, check_choice, warmup_warnings


def assign_weakest(kl: np.ndarray, tie: str = "last", rng: np.random.Generator | None = None) -> np.ndarray:
    """Column of the lowest KL per row; ties go to the first, the last or a random tied modality."""
    kl = np.asarray(kl, dtype=np.float64)
    if tie == "first":
        return np.argmin(kl, axis=1)
    if tie == "last":
        return kl.shape[1] - 1 - np.argmin(kl[:, ::-1], axis=1)
    if tie == "random":
        if rng is None:
            raise ValueError("tie='random' needs a random generator")
        keys = np.where(kl == kl.min(axis=1, keepdims=True), rng.random(kl.shape), np.inf)
        return np.argmin(keys, axis=1)
    raise ValueError(f"sampler option tie={tie!r} is not one of first, last, random")


@SAMPLERS.register("remix")
class RemixSampler(Sampler):
    """Options: ``warmup`` (E_w = 10), ``warmup_weight`` (0.5), ``gamma`` (1.0), ``order``
    (sequential | interleaved: round-robin over the pure subsets' batches), ``sequence``
    (comma-separated modality order of the subsets; default reversed modalities), ``tie``
    (last | first | random), ``assign`` (weakest: the paper's rule; random: each sample to a
    uniformly drawn modality, an ablation that keeps Remix's modality-pure epochs and drops its
    choice of which modality a sample trains).
    """

    def __init__(
        self,
        setup: SamplerSetup,
        *,
        warmup: int = 10,
        warmup_weight: float = 0.5,
        gamma: float = 1.0,
        order: str = "sequential",
        sequence: str | None = None,
        tie: str = "last",
        assign: str = "weakest",
    ) -> None:
        super().__init__(setup)
        self.warmup = int(warmup)
        self.warmup_weight = float(warmup_weight)
        self.gamma = float(gamma)
        self.order = check_choice("order", order, ("sequential", "interleaved"))
        self.tie = check_choice("tie", tie, ("last", "first", "random"))
        self.assign = check_choice("assign", assign, ("weakest", "random"))
        names = [s.strip() for s in sequence.split(",")] if sequence else list(reversed(self.modalities))
        if sorted(names) != sorted(self.modalities):
            raise ValueError(
                f"sampler option sequence={sequence!r} must list each of {', '.join(self.modalities)} once"
            )
        self.sequence = tuple(names)
        self.assignment: np.ndarray | None = None
        self.scored_epoch = -1

    def needs_scoring(self, epoch: int) -> bool:
        return epoch >= self.warmup

    def config_warnings(self) -> list[str]:
        return warmup_warnings(self.name, self.warmup, self.epochs, "remixes")

    def sets_unimodal_weights(self) -> bool:
        return self.gamma > 0 or (self.warmup > 0 and self.warmup_weight > 0)

    def receive_scores(self, epoch: int, result: ScoreResult) -> None:
        result.check(self.modalities, self.num_samples, self.name)
        kl = np.stack([kl_to_uniform(result.probs[m]) for m in self.modalities], axis=1)
        if self.assign == "weakest":
            self.assignment = assign_weakest(kl, self.tie, self.rng)
        else:
            self.assignment = self.rng.integers(0, len(self.modalities), self.num_samples)
        self.scored_epoch = epoch
        for j, m in enumerate(self.modalities):
            assigned = self.assignment == j
            self.sample_rows.extend(
                {
                    "epoch": epoch,
                    "idx": i,
                    "modality": m,
                    "kl_uniform": float(kl[i, j]),
                    "assigned": bool(assigned[i]),
                }
                for i in range(self.num_samples)
            )

    def _batches(self, idx: np.ndarray) -> list[np.ndarray]:
        return [idx[s : s + self.batch_size] for s in range(0, len(idx), self.batch_size)]

    def epoch_steps(self, epoch: int) -> int | None:
        if epoch < self.warmup:
            return -(-self.num_samples // self.batch_size)
        if self.assignment is None or self.scored_epoch != epoch:
            return None
        counts = np.bincount(self.assignment, minlength=len(self.modalities))
        return int(sum(-(-int(n) // self.batch_size) for n in counts))

    def plans(self, epoch: int) -> Iterator[Plan]:
        if epoch < self.warmup:
            weights = {"fused": 1.0, **{m: self.warmup_weight for m in self.modalities}}
            for b in self._batches(self.rng.permutation(self.num_samples)):
                yield Plan([Group(b, self.modalities, fused=True)], dict(weights))
            return
        if self.assignment is None or self.scored_epoch != epoch:
            raise RuntimeError(
                f"remix needs a scoring pass before epoch {epoch}: pass its ScoreResult to receive_scores()"
            )
        per_modality = []
        for m in self.sequence:
            members = np.flatnonzero(self.assignment == self.modalities.index(m))
            per_modality.append([(m, b) for b in self._batches(self.rng.permutation(members))])
        if self.order == "sequential":
            schedule = [x for batches in per_modality for x in batches]
        else:
            longest = max(len(b) for b in per_modality)
            schedule = [batches[i] for i in range(longest) for batches in per_modality if i < len(batches)]
        for m, b in schedule:
            weights = {"fused": 1.0, **{k: (self.gamma if k == m else 0.0) for k in self.modalities}}
            yield Plan([Group(b, (m,), fused=True)], weights)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            assignment=None if self.assignment is None else self.assignment.copy(),
            scored_epoch=self.scored_epoch,
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.assignment = None if state["assignment"] is None else np.asarray(state["assignment"]).copy()
        self.scored_epoch = int(state["scored_epoch"])
