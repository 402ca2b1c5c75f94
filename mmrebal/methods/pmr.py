"""``pmr``: Prototypical Modal Rebalance (Fan et al., CVPR 2023), on top of CE(fused).

    L = CE(fused) + alpha * sum_m c_m * PCE_m,   PCE_m = CE(-||phi_m - C_m||_2, y)

where ``phi_m`` are modality m's features, ``C_m`` its class prototypes (softmax over the negative
Euclidean distances to them), ``s_m`` the mean over m's rows of softmax(-d(phi_m, C_m))[y] (the
prototype confidence) and ``c_m = clip(max_k s_k / s_m - 1, 0, 1)``: with two modalities and
rho = s_a / s_v, the weaker one gets clip(rho - 1) (or clip(1 / rho - 1)) and the stronger 0, as in
BalanceBenchmark's PMR. ``coefficient=constant`` is the official repository's switch instead
(c = 1 for every modality below the best score, 0 for the best). The coefficients carry no gradient.

Prototypes: at the start of every epoch, the mean feature of each class over a random ``fraction``
(0.1: the reference reads a tenth of the shuffled train loader) of the train split, in eval mode
without gradient; after the first epoch ``C <- (1 - momentum) * C_new + momentum * C_old``
(momentum 0.2, the official default). A class absent from the subset keeps its previous prototype.
Sums and counts are added over DDP ranks, so every rank holds the same prototypes.

Outside ``modulation_starts <= epoch <= modulation_ends`` (default: every epoch) the loss is
CE(fused) alone. Deviations: the scores are means over each modality's own rows, so they stay
comparable when a sampler gives the modalities different rows (equal to the reference's ratio of
sums on paired batches); PER, the optional prototypical entropy term of the paper, is not built.
Each PCE term follows the plan's reduction (``ctx.scale``), like the CE terms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from mmrebal.methods import METHODS
from mmrebal.methods.base import (
    ModalityStats,
    ModulationWindow,
    PendingStats,
    StepContext,
    TrainStep,
    confidence_sum,
    row_index,
    take,
    unwrap,
)
from mmrebal.methods.joint import WeightedLoss
from mmrebal.models.model import Batch, ModelOutput

COEFFICIENTS = ("clip", "constant")


def prototype_logits(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """[B, C] negative Euclidean distances of each row to each class prototype."""
    return -torch.cdist(features.float(), prototypes.float())


def rebalance_coefficients(scores: dict[str, torch.Tensor], coefficient: str) -> dict[str, torch.Tensor]:
    """c_m from the prototype confidences s_m (see the module docstring); no gradient."""
    best = torch.stack(list(scores.values())).max()
    if coefficient == "constant":
        return {m: (s < best).float() for m, s in scores.items()}
    return {m: (best / s - 1.0).clamp(0.0, 1.0) for m, s in scores.items()}


def class_means(
    sums: torch.Tensor, counts: torch.Tensor, previous: torch.Tensor | None, momentum: float
) -> torch.Tensor:
    """New prototypes from per-class feature sums [C, D] and counts [C] (momentum after the first)."""
    seen = counts > 0
    means = sums / counts.clamp_min(1).unsqueeze(1)
    if previous is None:
        return means
    previous = previous.to(means.device)
    blended = (1.0 - momentum) * means + momentum * previous
    return torch.where(seen.unsqueeze(1), blended, previous)


@METHODS.register("pmr")
class PMR(ModulationWindow, WeightedLoss):
    def __init__(
        self,
        modalities: Sequence[str],
        alpha: float = 1.0,
        momentum: float = 0.2,
        fraction: float = 0.1,
        modulation_starts: int = 0,
        modulation_ends: int | None = None,
        coefficient: str = "clip",
    ) -> None:
        super().__init__(modalities, fused_weight=1.0, unimodal_weight=0.0)
        if coefficient not in COEFFICIENTS:
            raise ValueError(f"pmr coefficient={coefficient!r}: choose one of {', '.join(COEFFICIENTS)}")
        if not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f"pmr fraction={fraction}: must be in (0, 1]")
        self.alpha, self.momentum, self.fraction = float(alpha), float(momentum), float(fraction)
        self.starts, self.ends = int(modulation_starts), modulation_ends
        self.coefficient = coefficient
        self.prototypes: dict[str, torch.Tensor] | None = None
        self._coefficients: dict[str, torch.Tensor] = {}

    def begin_epoch(
        self, epoch: int, model: nn.Module, train_subset: Callable[[float], Iterator[Batch]]
    ) -> None:
        net = unwrap(model)
        device = next(net.parameters()).device
        sums = torch.zeros(len(self.modalities), net.num_classes, net.feature_dim, device=device)
        counts = torch.zeros(net.num_classes, device=device)
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                for batch in train_subset(self.fraction):
                    out = net(batch)
                    y = batch["label"].to(device)
                    counts += torch.bincount(y, minlength=net.num_classes).float()
                    for j, m in enumerate(self.modalities):
                        sums[j].index_add_(0, y, out.features[m].float())
        finally:
            net.train(was_training)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            table = torch.cat([sums.flatten(), counts])
            dist.all_reduce(table)
            sums, counts = table[: sums.numel()].view_as(sums), table[sums.numel() :]
        previous = self.prototypes or {}
        self.prototypes = {
            m: class_means(sums[j], counts, previous.get(m), self.momentum)
            for j, m in enumerate(self.modalities)
        }

    def loss(self, out: ModelOutput, step: TrainStep) -> tuple[torch.Tensor, PendingStats]:
        total, pending = super().loss(out, step)
        labels, active, ctx = step.labels, step.active, step.ctx
        self._coefficients = {}
        if self.prototypes is None or not self.modulating(ctx.epoch):
            return total, pending
        pce, scores, rows = {}, {}, {}
        for j, m in enumerate(self.modalities):
            mask = active[:, j]
            if not bool(mask.any()):
                continue
            index = row_index(mask, labels.device)
            y = take(labels, index)
            logits = prototype_logits(take(out.features[m], index), self.prototypes[m].to(labels.device))
            rows[m] = int(mask.sum())
            pce[m] = F.cross_entropy(logits, y)
            scores[m] = confidence_sum(logits, y, None) / rows[m]
        if len(scores) < 2:  # one modality in the step: nothing to compare it with
            return total, pending
        self._coefficients = rebalance_coefficients(scores, self.coefficient)
        terms = [self.alpha * self._coefficients[m] * ctx.scale(rows[m]) * pce[m] for m in pce]
        return total + torch.stack(terms).sum(), pending

    def after_backward(
        self, model: nn.Module, stats: dict[str, ModalityStats], ctx: StepContext
    ) -> dict[str, float]:
        """Each modality's coefficient c_m this step (0 when it had no rows or PMR was off)."""
        return {f"pmr_coef/{m}": float(self._coefficients.get(m, 0.0)) for m in self.modalities}

    def state_dict(self) -> dict[str, Any]:
        protos = None if self.prototypes is None else {m: p.cpu().clone() for m, p in self.prototypes.items()}
        return {"prototypes": protos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        protos = state["prototypes"]
        self.prototypes = None if protos is None else {m: p.clone() for m, p in protos.items()}
