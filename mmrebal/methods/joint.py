"""``joint``: CE(fused) + sum_m w_m CE(unimodal_m) — the papers' "Baseline".

The fused term covers the rows marked ``fused`` (DUS feeds only the paired part of its batch there);
each unimodal term covers the rows where its modality is active. Weights default to 1 for every
term (the DUS paper's Baseline); a sampler's ``ctx.loss_weights`` (Remix: 1 / 0.5 / 0.5 during
warm-up, gamma afterwards) overrides them key by key for that step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmrebal.methods import METHODS
from mmrebal.methods.base import (
    Method,
    ModalityStats,
    StepContext,
    StepResult,
    masked_ce,
    modality_stats,
    step_if_finite,
)
from mmrebal.models.model import Batch, ModelOutput


class WeightedLoss(Method):
    """Shared by ``joint`` and ``ogm-ge``: the weighted fused + unimodal loss and its statistics."""

    def __init__(
        self,
        modalities: Sequence[str],
        fused_weight: float = 1.0,
        unimodal_weight: float | dict[str, float] = 1.0,
    ) -> None:
        super().__init__(modalities)
        per = (
            unimodal_weight
            if isinstance(unimodal_weight, dict)
            else dict.fromkeys(modalities, unimodal_weight)
        )
        unknown = [m for m in per if m not in self.modalities]
        if unknown:
            raise ValueError(f"unimodal_weight names unknown modalities {', '.join(unknown)}")
        self.weights = {"fused": float(fused_weight), **{m: float(per.get(m, 0.0)) for m in self.modalities}}

    def step_weights(self, ctx: StepContext) -> dict[str, float]:
        return {**self.weights, **(ctx.loss_weights or {})}

    def loss(
        self,
        out: ModelOutput,
        labels: torch.Tensor,
        active: torch.Tensor,
        fused: torch.Tensor,
        weights: dict[str, float],
    ) -> tuple[torch.Tensor, dict[str, ModalityStats]]:
        """Weighted sum of the terms that have rows and a non-zero weight, plus per-modality stats."""
        terms: list[torch.Tensor] = []
        fused_ce = masked_ce(out.fused_logits, labels, fused)
        if fused_ce is not None and weights["fused"] != 0:
            terms.append(weights["fused"] * fused_ce)
        stats: dict[str, ModalityStats] = {}
        for j, m in enumerate(self.modalities):
            mask = active[:, j]
            ce = masked_ce(out.unimodal_logits[m], labels, mask)
            if ce is None:
                continue
            stats[m] = modality_stats(out.unimodal_logits[m], labels, mask, ce)
            if weights.get(m, 0.0) != 0:
                terms.append(weights[m] * ce)
        total = torch.stack(terms).sum() if terms else out.fused_logits.new_zeros(())
        return total, stats

    def after_backward(
        self, model: nn.Module, stats: dict[str, ModalityStats], ctx: StepContext
    ) -> dict[str, float]:
        """Hook between backward and step (OGM-GE); returns diagnostics for ``StepResult.extra``."""
        return {}

    def train_step(
        self,
        model: nn.Module,
        batch: Batch,
        active: torch.Tensor,
        fused: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        ctx: StepContext,
    ) -> StepResult:
        labels = batch["label"]
        optimizer.zero_grad(set_to_none=True)
        with ctx.amp():
            out = model(batch, active)
        total, stats = self.loss(
            out, labels, active.to(labels.device), fused.to(labels.device), self.step_weights(ctx)
        )
        extra: dict[str, float] = {}
        if total.requires_grad:
            total.backward()
            extra = self.after_backward(model, stats, ctx)
            step_if_finite(total, optimizer)
        return StepResult(float(total.detach()), stats, extra)


@METHODS.register("joint")
class Joint(WeightedLoss):
    name = "joint"
