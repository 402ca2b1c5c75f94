"""``mla``: Multimodal Learning with Alternating unimodal adaptation (Zhang et al., CVPR 2024).

Training (needs ``--fusion shared``): per step, for each modality in model order, a forward of that
modality alone (the others masked out, so never encoded) through the ONE shared head, its CE loss,
backward, the gradient modification of the shared head's weight, and an optimizer step.
``StepResult.loss`` is the sum of the modalities' losses. A sampler's ``loss_weights`` weigh the
joint loss's terms; MLA has no fused term and trains each modality with its plain CE, so it does
not apply them. A plan's ``normaliser`` (DUS: Eq. 2's sum over rows) does apply: each modality's CE
is then its sum over that modality's rows divided by the normaliser.

Gradient modification (the paper's OWM-style projection, Sec. 3.2): a projector P [D, D], P_0 = I,
kept across the whole run, protects what the head learned from the previously trained modality. With
h = the batch mean of the previous modality's features (D-vector):

    q = P h / (alpha + h^T P h)
    P <- P - q h^T P
    grad_W <- grad_W P            (grad_W: [C, D]; the bias gradient is left as is)

so the head's update for modality t is (nearly) orthogonal to the feature directions of the
modalities trained before it. The very first update of a run has no previous modality and is not
projected. ``alpha`` is a constant (default 0.1).

Differences from the reference code (``GSPlugin`` in its ``utils.py``), each an option:

- ``projector_input="current"``: the reference updates P with the *current* modality's features
  before projecting the current gradient; the paper (default ``"previous"``) with the previous one's.
- ``normalize_projector=True``: the reference divides P by its Frobenius norm after each update.
- the reference's alpha follows 0.1 ** (batch_index / batches_per_epoch + 1); here it is constant.
- the reference's parameter-name test (``n == "module.weight"`` on an ``nn.Linear``) never matches,
  so its released code does not actually project; ``projection=False`` reproduces that.

Test-time fusion (``predict``): ``test_fusion="dynamic"`` (default, the paper) weights each
modality's logits per sample by the normalised negative entropy of its softmax,
lambda_m = exp(max_k e_k - e_m) / sum_j exp(max_k e_k - e_j), e_m = -sum_c p_mc log p_mc.
``test_fusion="dynamic-batch"`` is the reference's version: one weight per modality and batch, from
the entropy of a softmax taken over the *batch* axis and summed over the whole [B, C] logits (so a
prediction depends on its batch-mates). ``"fixed"`` uses ``weights`` (modality -> w; default 1/m;
the reference's 0.5/0.5 and 0.35/0.25/0.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from mmrebal.methods import METHODS
from mmrebal.methods.base import (
    Method,
    ModalityStats,
    Pending,
    StepResult,
    TrainStep,
    ce_and_confidence,
    row_index,
    step_if_finite,
    take,
    to_host,
    unwrap,
)
from mmrebal.models.fusion import SharedHead
from mmrebal.models.model import Batch, ModelOutput


def owm_update(projector: torch.Tensor, h: torch.Tensor, alpha: float) -> torch.Tensor:
    """One recursive-least-squares step of P towards the orthogonal complement of ``h``."""
    ph = projector @ h
    q = ph / (alpha + h @ ph)
    return projector - torch.outer(q, h @ projector)


def entropy_weights(logits: Sequence[torch.Tensor], per_batch: bool = False) -> torch.Tensor:
    """Fusion weights [m, B] from each modality's softmax entropy (low entropy, high weight).

    ``per_batch``: the reference's variant, softmax over the batch axis and one entropy per modality.
    """
    stacked = torch.stack([z.float() for z in logits])  # [m, B, C]
    if per_batch:
        log_p = F.log_softmax(stacked, dim=1)
        entropy = -(log_p.exp() * log_p).sum(dim=(1, 2), keepdim=True).squeeze(-1)  # [m, 1]
        entropy = entropy.expand(-1, stacked.shape[1])
    else:
        log_p = F.log_softmax(stacked, dim=-1)
        entropy = -(log_p.exp() * log_p).sum(-1)  # [m, B]
    return torch.softmax(-entropy, dim=0)  # = exp(max e - e_m) / sum_j exp(max e - e_j)


@METHODS.register("mla")
class MLA(Method):
    def __init__(
        self,
        modalities: Sequence[str],
        test_fusion: str = "dynamic",
        weights: dict[str, float] | None = None,
        projection: bool = True,
        projector_input: str = "previous",
        alpha: float = 0.1,
        normalize_projector: bool = False,
    ) -> None:
        super().__init__(modalities)
        if test_fusion not in ("dynamic", "dynamic-batch", "fixed"):
            raise ValueError(
                f"mla test_fusion must be 'dynamic', 'dynamic-batch' or 'fixed', not {test_fusion!r}"
            )
        if projector_input not in ("previous", "current"):
            raise ValueError(f"mla projector_input must be 'previous' or 'current', not {projector_input!r}")
        chosen = weights or {m: 1.0 / len(self.modalities) for m in self.modalities}
        missing = [m for m in self.modalities if m not in chosen]
        if missing:
            raise ValueError(f"mla weights miss {', '.join(missing)}")
        self.test_fusion = test_fusion
        self.weights = [float(chosen[m]) for m in self.modalities]
        self.projection = bool(projection)
        self.projector_input = projector_input
        self.alpha = float(alpha)
        self.normalize = bool(normalize_projector)
        self.projector: torch.Tensor | None = None
        self.previous: torch.Tensor | None = None  # batch-mean features of the last trained modality
        self.updates = 0

    @staticmethod
    def _shared_head(model: nn.Module) -> nn.Linear:
        inner = unwrap(model)
        if not isinstance(inner.fusion, SharedHead) or inner.unimodal_source != "split":
            raise ValueError(
                "method 'mla' trains one head shared by all modalities: use --fusion shared "
                "(with the default unimodal_logits)"
            )
        return inner.fusion.head

    def _project(self, weight: nn.Parameter, current: torch.Tensor) -> None:
        """Apply the gradient modification to the shared head's weight gradient, then remember h."""
        if self.projector is None:
            self.projector = torch.eye(current.numel(), device=current.device)
        self.projector = self.projector.to(current.device)  # a resumed state comes back on the CPU
        h = self.previous if self.projector_input == "previous" else current
        if self.updates > 0 and h is not None and weight.grad is not None:
            self.projector = owm_update(self.projector, h.to(current.device), self.alpha)
            if self.normalize:
                self.projector = self.projector / torch.linalg.matrix_norm(self.projector)
            weight.grad.copy_(weight.grad @ self.projector.t().to(weight.grad.dtype))
        self.previous = current
        self.updates += 1

    @staticmethod
    def _mean_features(features: torch.Tensor) -> torch.Tensor:
        """Batch mean of the features, averaged over DDP ranks so every rank keeps the same P."""
        mean = features.detach().float().mean(0)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(mean)
            mean /= dist.get_world_size()
        return mean

    def train_step(self, step: TrainStep) -> StepResult:
        model, batch, active, optimizer, ctx = step.model, step.batch, step.active, step.optimizer, step.ctx
        head = self._shared_head(model)
        labels = step.labels
        stats: dict[str, ModalityStats] = {}
        total = 0.0
        for j, m in enumerate(self.modalities):
            mask = active[:, j]
            if not bool(mask.any()):
                continue
            only = torch.zeros_like(active)
            only[:, j] = mask
            optimizer.zero_grad(set_to_none=True)
            with ctx.amp():
                out = model(batch, only)
            rows = row_index(mask, labels.device)
            ce, confidence = ce_and_confidence(out.unimodal_logits[m], labels, rows)
            (ctx.scale(int(mask.sum())) * ce).backward()
            if self.projection:
                self._project(head.weight, self._mean_features(take(out.features[m], rows)))
            loss, one = to_host(ce, {m: Pending(int(mask.sum()), ce, confidence)})
            step_if_finite(loss, optimizer)
            stats.update(one)
            total += loss
        return StepResult(total, stats)

    def predict(self, model: nn.Module, batch: Batch) -> ModelOutput:
        out = model(batch)
        logits = [out.unimodal_logits[m] for m in self.modalities]
        if self.test_fusion != "fixed":
            weights = entropy_weights(logits, per_batch=self.test_fusion == "dynamic-batch").unsqueeze(-1)
        else:
            weights = torch.tensor(self.weights, device=logits[0].device).view(-1, 1, 1)
        fused = (weights * torch.stack([z.float() for z in logits])).sum(0)
        return ModelOutput(out.features, out.unimodal_logits, fused)

    def state_dict(self) -> dict[str, Any]:
        return {"projector": self.projector, "previous": self.previous, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.projector = state["projector"]
        self.previous = state["previous"]
        self.updates = int(state["updates"])
