"""``joint``: CE(fused) + sum_m w_m CE(unimodal_m) — the papers' "Baseline".

The fused term covers the rows marked ``fused`` (DUS feeds only the paired part of its batch there);
each unimodal term covers the rows where its modality is active. Each term is a mean over its rows,
or, when the plan has a ``normaliser`` (DUS, Eq. 2), the sum over its rows divided by it, so a
modality given more rows weighs more in the loss. Weights default to 1 for every
term (the DUS paper's Baseline); a sampler's ``ctx.loss_weights`` (Remix: 1 / 0.5 / 0.5 during
warm-up, gamma afterwards) overrides them key by key for that step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mmrebal.methods import METHODS
from mmrebal.methods.base import (
    Method,
    ModalityStats,
    Pending,
    PendingStats,
    StepContext,
    StepResult,
    TrainStep,
    ce_and_confidence,
    confidence_sum,
    row_index,
    step_if_finite,
    to_host,
)
from mmrebal.models.model import ModelOutput


class WeightedLoss(Method):
    """Shared by ``joint`` and ``ogm-ge``: the weighted fused + unimodal loss and its statistics."""

    needs_paired = False  # also measure each modality's confidence sum over the paired rows
    honours_loss_weights = True

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

    def ran_with(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """The loss weights really trained with (``fused``, ``pmr`` and ``agm`` fix them below the
        signature's defaults)."""
        unimodal = {m: self.weights[m] for m in self.modalities}
        one = set(unimodal.values())
        return {**defaults, "fused_weight": self.weights["fused"],
                "unimodal_weight": one.pop() if len(one) == 1 else unimodal}  # fmt: skip

    def trains_unimodal_rows(self) -> bool:
        return any(self.weights[m] > 0 for m in self.modalities)

    def step_weights(self, ctx: StepContext) -> dict[str, float]:
        return {**self.weights, **(ctx.loss_weights or {})}

    def loss(self, out: ModelOutput, step: TrainStep) -> tuple[torch.Tensor, PendingStats]:
        """Weighted sum of the terms that have rows and a non-zero weight, plus per-modality stats.

        Each term is its mean CE times ``ctx.scale(rows)``: a mean, or the plan's sum / normaliser.
        The step's masks are on the host, so selecting rows never synchronises a GPU."""
        labels, active, fused, ctx = step.labels, step.active, step.fused, step.ctx
        weights = self.step_weights(ctx)
        terms: list[torch.Tensor] = []
        if bool(fused.any()) and weights["fused"] != 0:
            fused_ce, _ = ce_and_confidence(out.fused_logits, labels, row_index(fused, labels.device))
            terms.append(weights["fused"] * ctx.scale(int(fused.sum())) * fused_ce)
        pending: PendingStats = {}
        paired = active.all(1)
        has_paired = self.needs_paired and bool(paired.any())
        paired_rows = row_index(paired, labels.device) if has_paired else None
        for j, m in enumerate(self.modalities):
            mask = active[:, j]
            if not bool(mask.any()):
                continue
            ce, confidence = ce_and_confidence(out.unimodal_logits[m], labels, row_index(mask, labels.device))
            rows = int(mask.sum())
            paired_confidence = None
            if self.needs_paired:  # no paired row: a zero score, so OGM-GE skips the step
                paired_confidence = (
                    confidence_sum(out.unimodal_logits[m], labels, paired_rows)
                    if has_paired
                    else confidence.new_zeros(())
                )
            pending[m] = Pending(rows, ce, confidence, paired_confidence)
            if weights.get(m, 0.0) != 0:
                terms.append(weights[m] * ctx.scale(rows) * ce)
        total = torch.stack(terms).sum() if terms else out.fused_logits.new_zeros(())
        return total, pending

    def on_output(self, out: ModelOutput, ctx: StepContext) -> None:
        """Hook after the forward pass, before the loss (AGM: gradient hooks on the features)."""

    def after_backward(
        self, model: nn.Module, stats: dict[str, ModalityStats], ctx: StepContext
    ) -> dict[str, float]:
        """Hook between backward and step (OGM-GE); returns diagnostics for ``StepResult.extra``."""
        return {}

    def train_step(self, step: TrainStep) -> StepResult:
        step.optimizer.zero_grad(set_to_none=True)
        with step.ctx.amp():
            out = step.model(step.batch, step.active)
        self.on_output(out, step.ctx)
        total, pending = self.loss(out, step)
        if total.requires_grad:
            total.backward()
        loss, stats = to_host(total, pending)  # the step's one synchronisation
        extra: dict[str, float] = {}
        if total.requires_grad:
            extra = self.after_backward(step.model, stats, step.ctx)
            step_if_finite(loss, step.optimizer)
        return StepResult(loss, stats, extra)


@METHODS.register("joint")
class Joint(WeightedLoss):
    """The joint loss with its default weights: fused + every unimodal term."""
