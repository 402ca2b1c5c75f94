"""SMV — sample-level modality valuation (Wei et al., CVPR 2024, "Enhancing multimodal cooperation via
sample-level modality valuation"), the data-side ancestor of Remix.

Warm-up: ``warmup`` (5) epochs of shuffled full multimodal batches. From then on, before every
epoch, a no-grad scoring pass values each modality of each sample with the Shapley value of the
correctness game v(S): v({}) = 0, v({m}) = 1 when modality m's prediction is right, v(M) = n when
the fused prediction is right (the reference's 2 for audio-visual). Two modalities give the
reference's phi_a = (v_a + v_av - v_v) / 2; for n > 2 the pass has no prediction of the middle
coalitions, so each modality gets v({m}) plus an equal share of the surplus v(M) - sum_k v({k})
(which is exactly the two-player Shapley value). A sample whose modality m contributes little gets
extra copies that carry only m (the others masked at feature level), as the reference's thresholds:
0.4 < phi < 0.9 -> 1 copy, -0.1 < phi < 0.4 -> 2, phi < -0.1 -> 3, otherwise none. The epoch trains
on every sample once plus its copies, shuffled, in batches of ``batch_size`` rows; a sample appears
at most once per batch (a second entry of it waits for the next batch), so no copy is merged away.

Deviation: a modality's prediction is the model's unimodal prediction from the scoring pass (for
``concat`` the fusion's own share of the fused logits), where the reference drops the other
modality's features from the fused classifier; the two differ by the fusion bias only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np

from mmrebal.evaluation.scores import ScoreResult
from mmrebal.samplers import SAMPLERS
from mmrebal.samplers.base import Group, Plan, Sampler, SamplerSetup, check_choice, warmup_warnings

FULL = -1  # the modality index of an entry that carries every modality


def contributions(correct: np.ndarray, fused_correct: np.ndarray) -> np.ndarray:
    """[N, n] values phi from per-modality correctness [N, n] and fused correctness [N] (see above)."""
    singles = correct.astype(np.float64)
    n = singles.shape[1]
    surplus = n * fused_correct.astype(np.float64) - singles.sum(axis=1)
    return singles + surplus[:, None] / n


def copies_for(values: np.ndarray) -> np.ndarray:
    """The reference's number of extra single-modality copies for each value."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros(values.shape, dtype=np.int64)
    out[(values > 0.4) & (values < 0.9)] = 1
    out[(values > -0.1) & (values < 0.4)] = 2
    out[values < -0.1] = 3
    return out


def spread(entries: list[tuple[int, int]], batch_size: int) -> list[list[tuple[int, int]]]:
    """Consecutive batches of ``entries`` in order, deferring an entry whose sample the batch has."""
    pending = deque(entries)
    batches = []
    while pending:
        batch: list[tuple[int, int]] = []
        seen: set[int] = set()
        deferred = []
        while pending and len(batch) < batch_size:
            entry = pending.popleft()
            if entry[0] in seen:
                deferred.append(entry)
            else:
                batch.append(entry)
                seen.add(entry[0])
        pending.extendleft(reversed(deferred))
        batches.append(batch)
    return batches


@SAMPLERS.register("smv")
class SMVSampler(Sampler):
    """Options: ``warmup`` (5 epochs of plain batches before the first valuation), ``copies``
    (valued: the paper's rule; random: each modality's copy counts shuffled across the samples, an
    ablation that keeps the epoch's extra rows and steps exactly and drops the valuation's choice of
    which samples get them)."""

    def __init__(
        self,
        setup: SamplerSetup,
        *,
        warmup: int = 5,
        copies: str = "valued",
    ) -> None:
        super().__init__(setup)
        self.copy_rule = check_choice("copies", copies, ("valued", "random"))
        if int(warmup) < 1:
            raise ValueError(
                f"sampler option warmup={warmup} must be at least 1 (SMV values a trained model)"
            )
        self.warmup = int(warmup)
        self._drawn: tuple[int, list[list[tuple[int, int]]]] | None = None  # (epoch, its batches)
        self.copies: np.ndarray | None = None  # [N, n] extra copies per sample and modality
        self.scored_epoch = -1

    def needs_scoring(self, epoch: int) -> bool:
        return epoch >= self.warmup

    def config_warnings(self) -> list[str]:
        return warmup_warnings(self.name, self.warmup, self.epochs, "resamples")

    def receive_scores(self, epoch: int, result: ScoreResult) -> None:
        labels = np.asarray(result.labels)
        correct = np.stack([result.probs[m].argmax(1) == labels for m in self.modalities], axis=1)
        values = contributions(correct, result.probs["fused"].argmax(1) == labels)
        self.copies = copies_for(values)
        if self.copy_rule == "random":
            self.copies = np.stack([self.rng.permutation(col) for col in self.copies.T], axis=1)
        self.scored_epoch = epoch
        for j, m in enumerate(self.modalities):
            self.sample_rows.extend(
                {
                    "epoch": epoch,
                    "idx": i,
                    "modality": m,
                    "contribution": float(values[i, j]),
                    "copies": int(self.copies[i, j]),
                }  # fmt: skip
                for i in range(self.num_samples)
            )

    def entries(self, epoch: int) -> list[tuple[int, int]]:
        """(sample, modality index or FULL) for every row of the epoch, unshuffled."""
        out = [(i, FULL) for i in range(self.num_samples)]
        if epoch < self.warmup:
            return out
        if self.copies is None or self.scored_epoch != epoch:
            raise RuntimeError(
                f"smv needs a scoring pass before epoch {epoch}: pass its ScoreResult to receive_scores()"
            )
        for j in range(len(self.modalities)):
            out += [(int(i), j) for i in np.repeat(np.arange(self.num_samples), self.copies[:, j])]
        return out

    def _epoch_batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        """The epoch's batches, drawn once: by whichever of :meth:`epoch_steps` and :meth:`plans`
        asks first, so asking for the length never changes what is drawn."""
        if self._drawn is None or self._drawn[0] != epoch:
            entries = self.entries(epoch)
            order = self.rng.permutation(len(entries))
            self._drawn = (epoch, spread([entries[k] for k in order], self.batch_size))
        return self._drawn[1]

    def epoch_steps(self, epoch: int) -> int | None:
        return len(self._epoch_batches(epoch))

    def plans(self, epoch: int) -> Iterator[Plan]:
        batches = self._epoch_batches(epoch)
        self._drawn = None
        for batch in batches:
            groups = []
            for j in (FULL, *range(len(self.modalities))):
                rows = np.asarray([i for i, k in batch if k == j], dtype=np.int64)
                if len(rows):
                    carried = self.modalities if j == FULL else (self.modalities[j],)
                    groups.append(Group(rows, carried, fused=True))
            yield Plan(groups)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            copies=None if self.copies is None else self.copies.copy(), scored_epoch=self.scored_epoch
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.copies = None if state["copies"] is None else np.asarray(state["copies"]).copy()
        self.scored_epoch = int(state["scored_epoch"])
