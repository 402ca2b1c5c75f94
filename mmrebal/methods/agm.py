"""``agm``: Adaptive Gradient Modulation (Li et al., ICCV 2023), on top of CE(fused).

Before each step, without gradient and in eval mode, on the rows that carry every modality: the
features are encoded once and fused for every coalition S of modalities (the others zeroed, as the
model masks an absent modality), giving f(S); each modality's Shapley mono output is

    phi_m = sum over S in M \\ {m} of |S|! (n - |S| - 1)! / n! * (f(S + m) - f(S))

(``shapley=nonempty`` leaves out S = {}, as BalanceBenchmark's AGM does). Its score is
s_m = mean over those rows of -log max(softmax(phi_m)[y], 1e-8) (a loss: higher is weaker). With the
running means S_m of all earlier scores (0 at the start):

    r_m = exp(n / (n - 1) * (s_m - mean_k s_k)),   R_m = exp(n / (n - 1) * (S_m - mean_k S_k)),
    k_m = exp(alpha * min(R_m - r_m, max_gap))      (alpha 0.1, max_gap 7, as the reference)

then S_m takes in s_m (BalanceBenchmark's n-modality code; ``ratio=inverse`` flips both exponents,
r_m = exp(n / (n - 1) * (mean_k s_k - s_m)), as its earlier two-modality code, exp(s_v - s_a) for
audio, does). The step back-propagates CE(fused) in train mode; a backward hook on each
modality's features multiplies the gradient flowing into its encoder by k_m. If a gradient of the
fusion's parameters then exceeds ``clip_grad`` (5) in magnitude, the model's gradient norm is clipped
to ``clip_grad`` (as the reference does; ``clip_grad=null`` turns it off).

Outside ``modulation_starts <= epoch <= modulation_ends`` (default: every epoch), and on a step with
no row carrying every modality, k = 1 and the running means stay. Deviations: the reference scales
each encoder's weight gradients (biases excluded) after backward; the hook here scales every
parameter of the encoder, biases and norms included. Scores are per DDP rank (not summed).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mmrebal.methods import METHODS
from mmrebal.methods.base import (
    ModalityStats,
    ModulationWindow,
    StepContext,
    StepResult,
    TrainStep,
    row_index,
    take,
    unwrap,
)
from mmrebal.methods.joint import WeightedLoss
from mmrebal.models.model import Batch, ModelOutput, MultimodalModel

SHAPLEY = ("exact", "nonempty")
RATIOS = ("loss", "inverse")


def shapley_outputs(
    coalition_logits: dict[frozenset[str], torch.Tensor],
    modalities: Sequence[str],
    include_empty: bool = True,
) -> dict[str, torch.Tensor]:
    """phi_m for every modality from the logits f(S) of every coalition S (frozensets of names)."""
    n = len(modalities)
    out = {}
    for m in modalities:
        others = [k for k in modalities if k != m]
        total = torch.zeros_like(coalition_logits[frozenset(modalities)])
        for size in range(0 if include_empty else 1, n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for subset in itertools.combinations(others, size):
                s = frozenset(subset)
                total = total + weight * (coalition_logits[s | {m}] - coalition_logits[s])
        out[m] = total
    return out


def mono_scores(mono: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """s_m = mean of -log max(softmax(phi_m)[y], 1e-8)."""
    return {
        m: -z.float().softmax(1).gather(1, labels.unsqueeze(1)).clamp_min(1e-8).log().mean()
        for m, z in mono.items()
    }


def modulation_coefficients(
    scores: dict[str, float],
    running: dict[str, float],
    alpha: float,
    max_gap: float = 7.0,
    ratio_sign: float = 1.0,
) -> dict[str, float]:
    """k_m from this step's scores and the running means (see the module docstring); ``ratio_sign``
    -1 flips the exponents of r and R (``ratio=inverse``)."""
    n = len(scores)
    mean, running_mean = sum(scores.values()) / n, sum(running.values()) / n
    scale = ratio_sign * n / (n - 1)
    out = {}
    for m, s in scores.items():
        ratio = math.exp(scale * (s - mean))
        optimal = math.exp(scale * (running[m] - running_mean))
        out[m] = math.exp(alpha * min(optimal - ratio, max_gap))
    return out


@METHODS.register("agm")
class AGM(ModulationWindow, WeightedLoss):
    def __init__(
        self,
        modalities: Sequence[str],
        alpha: float = 0.1,
        max_gap: float = 7.0,
        clip_grad: float | None = 5.0,
        shapley: str = "exact",
        ratio: str = "loss",
        modulation_starts: int = 0,
        modulation_ends: int | None = None,
    ) -> None:
        super().__init__(modalities, fused_weight=1.0, unimodal_weight=0.0)
        if shapley not in SHAPLEY:
            raise ValueError(f"agm shapley={shapley!r}: choose one of {', '.join(SHAPLEY)}")
        self.alpha, self.max_gap = float(alpha), float(max_gap)
        self.clip_grad = None if clip_grad is None else float(clip_grad)
        if ratio not in RATIOS:
            raise ValueError(f"agm ratio={ratio!r}: choose one of {', '.join(RATIOS)}")
        self.include_empty = shapley == "exact"
        self.ratio_sign = 1.0 if ratio == "loss" else -1.0
        self.starts, self.ends = int(modulation_starts), modulation_ends
        self.running = dict.fromkeys(self.modalities, 0.0)
        self.updates = 0
        self.coefficients = dict.fromkeys(self.modalities, 1.0)  # this step's k_m

    def scores(self, net: MultimodalModel, batch: Batch, paired: torch.Tensor) -> dict[str, float]:
        """This step's s_m on the paired rows (eval mode, no gradient; one host transfer)."""
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                features = net(batch, paired.unsqueeze(1).expand(-1, len(self.modalities))).features
                rows = row_index(paired, batch["label"].device)
                full = {m: take(features[m], rows) for m in self.modalities}
                logits = {}
                for size in range(len(self.modalities) + 1):
                    for subset in itertools.combinations(self.modalities, size):
                        parts = [
                            full[m] if m in subset else torch.zeros_like(full[m]) for m in self.modalities
                        ]
                        logits[frozenset(subset)] = net.fusion(parts)
                mono = shapley_outputs(logits, self.modalities, self.include_empty)
                scores = mono_scores(mono, take(batch["label"], rows))
        finally:
            net.train(was_training)
        values = torch.stack(list(scores.values())).tolist()
        return dict(zip(scores, values, strict=True))

    def update(self, scores: dict[str, float]) -> dict[str, float]:
        """k_m, then the running means take in this step's scores."""
        coefficients = modulation_coefficients(
            scores, self.running, self.alpha, self.max_gap, self.ratio_sign
        )
        self.updates += 1
        t = self.updates
        self.running = {m: self.running[m] * (t - 1) / t + scores[m] / t for m in self.modalities}
        return coefficients

    def train_step(self, step: TrainStep) -> StepResult:
        """k_m from this step's scores first, then the fused step with the hooks (:meth:`on_output`)."""
        paired = step.active.all(1)
        self.coefficients = dict.fromkeys(self.modalities, 1.0)
        if self.modulating(step.ctx.epoch) and bool(paired.any()):
            self.coefficients = self.update(self.scores(unwrap(step.model), step.batch, paired))
        return super().train_step(step)

    def on_output(self, out: ModelOutput, ctx: StepContext) -> None:
        for m, k in self.coefficients.items():
            if k != 1.0 and out.features[m].requires_grad:
                out.features[m].register_hook(lambda grad, k=k: grad * k)

    def after_backward(
        self, model: nn.Module, stats: dict[str, ModalityStats], ctx: StepContext
    ) -> dict[str, float]:
        self.clip(unwrap(model))
        return {f"agm_coef/{m}": k for m, k in self.coefficients.items()}

    def clip(self, net: MultimodalModel) -> None:
        if self.clip_grad is None:
            return
        grads = [p.grad for p in net.fusion.parameters() if p.grad is not None]
        if grads and float(torch.stack([g.abs().max() for g in grads]).max()) > self.clip_grad:
            nn.utils.clip_grad_norm_(net.parameters(), max_norm=self.clip_grad)

    def state_dict(self) -> dict[str, Any]:
        return {"running": dict(self.running), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.running = {m: float(v) for m, v in state["running"].items()}
        self.updates = int(state["updates"])
