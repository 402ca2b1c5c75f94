"""``unimodal``: train and evaluate one modality alone (the unimodal rows of the papers' tables).

Only ``modality``'s encoder runs (the others are masked out at feature level, so they are never
encoded), the loss is CE of its unimodal logits (a sampler's ``loss_weights`` do not apply; a plan's
``normaliser`` does: the sum over the rows divided by it), and
at evaluation its logits are also the fused logits. ``predict`` runs the whole model so that every
scope exists for scoring: the other modalities' logits come from encoders and heads this method
never trains (chance level), which is what they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmrebal.methods import METHODS
from mmrebal.methods.base import (
    Method,
    Pending,
    StepResult,
    TrainStep,
    ce_and_confidence,
    row_index,
    step_if_finite,
    to_host,
)
from mmrebal.models.model import Batch, ModelOutput


@METHODS.register("unimodal")
class Unimodal(Method):
    def __init__(self, modalities: Sequence[str], modality: str | None = None) -> None:
        super().__init__(modalities)
        if modality not in self.modalities:
            raise ValueError(
                f"method 'unimodal' needs --method-opt modality=NAME with one of {', '.join(self.modalities)}"
            )
        self.modality = modality
        self.index = self.modalities.index(modality)

    def _only(self, active: torch.Tensor) -> torch.Tensor:
        only = torch.zeros_like(active)
        only[:, self.index] = active[:, self.index]
        return only

    def train_step(self, step: TrainStep) -> StepResult:
        only = self._only(step.active)
        mask = only[:, self.index]
        if not bool(mask.any()):
            return StepResult(0.0, {})
        step.optimizer.zero_grad(set_to_none=True)
        with step.ctx.amp():
            out = step.model(step.batch, only)
        labels = step.labels
        ce, confidence = ce_and_confidence(
            out.unimodal_logits[self.modality], labels, row_index(mask, labels.device)
        )
        (step.ctx.scale(int(mask.sum())) * ce).backward()
        loss, stats = to_host(ce, {self.modality: Pending(int(mask.sum()), ce, confidence)})
        step_if_finite(loss, step.optimizer)
        return StepResult(loss, stats)

    def predict(self, model: nn.Module, batch: Batch) -> ModelOutput:
        out = model(batch)
        return ModelOutput(out.features, out.unimodal_logits, out.unimodal_logits[self.modality])
