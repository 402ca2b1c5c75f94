"""Drive samplers without a trainer: synthetic StepFeedback and ScoreResult as the trainer sends them."""

from __future__ import annotations

import numpy as np

from mmrebal.samplers import Plan, Sampler, ScoreResult, StepFeedback, create_sampler

MODS2 = ("audio", "visual")
MODS3 = ("rgb", "depth", "flow")


def make(
    name: str, modalities=MODS2, n: int = 40, batch: int = 8, epochs: int = 6, seed: int = 0, **opts
) -> Sampler:
    labels = np.arange(n) % 3
    return create_sampler(
        name,
        num_samples=n,
        labels=labels,
        modalities=modalities,
        batch_size=batch,
        epochs=epochs,
        seed=seed,
        **opts,
    )


def fake_scores(sampler: Sampler, epoch: int, classes: int = 3) -> ScoreResult:
    """Deterministic per-epoch softmax outputs and losses over the train split."""
    rng = np.random.default_rng(1000 + epoch)
    n = sampler.num_samples
    probs = {}
    for scope in ("fused", *sampler.modalities):
        logits = rng.normal(size=(n, classes))
        probs[scope] = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = sampler.labels
    losses = {k: -np.log(p[np.arange(n), labels]) for k, p in probs.items()}
    return ScoreResult(labels=labels, probs=probs, losses=losses)


def confidence(rows: np.ndarray, modality_index: int) -> np.ndarray:
    """A per-row confidence that depends on the rows, so that different plans give different feedback."""
    return ((rows * (modality_index + 3)) % 11) / 11 * (0.9 - 0.3 * modality_index) + 0.05


def run_epoch(
    sampler: Sampler,
    epoch: int,
    bias: dict[str, float] | None = None,
    announced: list[int | None] | None = None,
) -> list[Plan]:
    """One epoch as the trainer runs it: optional scoring, plans with feedback, end of epoch;
    ``announced`` receives what ``epoch_steps`` says once the scores are in (the progress bar's total)."""
    if sampler.needs_scoring(epoch):
        sampler.receive_scores(epoch, fake_scores(sampler, epoch))
    if announced is not None:
        announced.append(sampler.epoch_steps(epoch))
    plans = []
    for i, plan in enumerate(sampler.plans(epoch)):
        rows, active, _ = plan.layout(sampler.modalities)
        counts, sums = {}, {}
        for j, m in enumerate(sampler.modalities):
            mine = rows[active[:, j]]
            counts[m] = len(mine)
            conf = confidence(mine, j) if bias is None else np.full(len(mine), bias[m])
            sums[m] = float(conf.sum())
        sampler.feedback(StepFeedback(epoch, epoch * 10_000 + i, counts, sums, {m: 1.0 for m in counts}))
        plans.append(plan)
    sampler.end_epoch(epoch)
    return plans


def plan_signature(plan: Plan) -> tuple:
    groups = tuple((tuple(g.indices.tolist()), g.modalities, g.fused) for g in plan.groups)
    weights = None if plan.loss_weights is None else tuple(sorted(plan.loss_weights.items()))
    return groups, weights
