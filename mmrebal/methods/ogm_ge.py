"""``ogm-ge``: On-the-fly Gradient Modulation with Generalization Enhancement (Peng et al., CVPR 2022).

Per step, after backward and before the optimizer step, as in the reference ``main.py``:

- score_m = sum of softmax(z_m)[y] over the step's rows (z_m: the unimodal logits, for ``concat``
  the split-head logits W_m f_m + b/m the reference uses). The reference only sees fully paired
  batches; under a sampler whose batches are partial (DUS: a^(j) rows per modality) the rows are
  chosen by ``rho_rows``: ``paired`` (default) the rows that carry every modality, so rho compares
  the modalities on the same samples; ``all`` each modality's own active rows (rho is then mostly
  the ratio of the row counts: 44 / 20 rows give rho ~ 2.2 and modulate whichever modality the
  sampler just favoured); ``mean`` the mean confidence over each modality's active rows. On full
  batches all three give the reference's ratio;
- rho_m = score_m / score_other for two modalities. For m > 2 (a documented generalisation):
  rho_m = score_m / mean_{k != m} score_k, which equals the two-modality ratio when m = 2;
- k_m = 1 - tanh(alpha * rho_m) for every m with rho_m > 1 (Eq. 10 of the paper; the reference
  writes tanh(alpha * relu(rho))), 1 otherwise. ``coefficient="shifted"`` uses
  1 - tanh(alpha * relu(rho_m - 1)) instead, continuous at rho = 1 (not the paper's);
- only while ``modulation_starts <= epoch <= modulation_ends`` (inclusive, as the reference): each
  selected gradient g of modality m's encoder becomes g * k_m (``mode="OGM"``), or, with GE
  (``mode="OGM_GE"``), g * k_m + N(0, (std(g) + 1e-8)^2) with the std of the *unscaled* gradient —
  for every modality, the non-dominant one (k = 1) too, exactly as the reference.

``params="conv"`` (default) selects the 4-D (convolution) weights, which is what the reference
modulates; ``params="all"`` selects every parameter of the encoder (needed for transformer encoders,
which have no 4-D weight). The loss is the reference's CE(fused) alone (``unimodal_weight=0``);
samplers that feed unimodal-only rows (DUS) need ``unimodal_weight`` > 0 for those rows to count.

A step where some modality has no rows (a Remix modality-pure batch), or with ``rho_rows=paired``
no paired row, has no ratio and is not modulated. Noise comes from a generator seeded by
(``seed``, step), so it is identical on every DDP rank and after resume; under DDP the scores (and
row counts) are summed over ranks (the global batch) before the ratio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

from mmrebal.methods import METHODS
from mmrebal.methods.base import ModalityStats, StepContext, unwrap
from mmrebal.methods.joint import WeightedLoss


def discrepancy_ratios(scores: dict[str, float]) -> dict[str, float]:
    """rho_m = score_m / mean of the other modalities' scores (score_m / score_other for two)."""
    names = list(scores)
    ratios = {}
    for m in names:
        others = [scores[k] for k in names if k != m]
        ratios[m] = scores[m] / (sum(others) / len(others))
    return ratios


def modulation_coefficients(
    ratios: dict[str, float], alpha: float, shifted: bool = False
) -> dict[str, float]:
    """k_m = 1 - tanh(alpha * rho_m) where rho_m > 1 (shifted: rho_m - 1), else 1."""
    return {
        m: 1.0 - math.tanh(alpha * (r - 1.0 if shifted else r)) if r > 1 else 1.0 for m, r in ratios.items()
    }


@METHODS.register("ogm-ge")
class OGMGE(WeightedLoss):
    def __init__(
        self,
        modalities: Sequence[str],
        alpha: float = 0.1,
        modulation_starts: int = 0,
        modulation_ends: int = 50,
        mode: str = "OGM_GE",
        params: str = "conv",
        coefficient: str = "paper",
        rho_rows: str = "paired",
        fused_weight: float = 1.0,
        unimodal_weight: float | dict[str, float] = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(modalities, fused_weight, unimodal_weight)
        if mode not in ("OGM_GE", "OGM"):
            raise ValueError(f"ogm-ge mode must be 'OGM_GE' or 'OGM', not {mode!r}")
        if params not in ("conv", "all"):
            raise ValueError(f"ogm-ge params must be 'conv' or 'all', not {params!r}")
        if coefficient not in ("paper", "shifted"):
            raise ValueError(f"ogm-ge coefficient must be 'paper' or 'shifted', not {coefficient!r}")
        if rho_rows not in ("paired", "all", "mean"):
            raise ValueError(f"ogm-ge rho_rows must be 'paired', 'all' or 'mean', not {rho_rows!r}")
        self.rho_rows = rho_rows
        self.needs_paired = rho_rows == "paired"
        self.alpha = float(alpha)
        self.starts = int(modulation_starts)
        self.ends = int(modulation_ends)
        self.mode = mode
        self.params = params
        self.shifted = coefficient == "shifted"
        self.seed = int(seed)

    def config_warnings(self, epochs: int, optimizer: str) -> list[str]:
        lines = []
        if self.starts >= epochs:
            lines.append(
                f"ogm-ge: modulation_starts {self.starts} >= epochs {epochs}, so no step is modulated "
                "(the run is the fused-loss baseline)"
            )
        if optimizer in ("adam", "adamw"):
            lines.append(
                f"ogm-ge under {optimizer}: Adam rescales each parameter's update by its own gradient "
                "history, which cancels most of OGM's coefficient k; the reference trains with SGD "
                "(--optimizer sgd, or --preset ogm)"
            )
        return lines

    def _global_scores(self, stats: dict[str, ModalityStats]) -> dict[str, float]:
        """score_m per ``rho_rows``, over the global batch (sums and row counts all-reduced under DDP)."""
        empty = ModalityStats(0, 0.0, 0.0, 0.0)
        per = [stats.get(m, empty) for m in self.modalities]
        table = torch.tensor(
            [[s.confidence_sum, float(s.batch_size), s.paired_confidence_sum or 0.0] for s in per],
            dtype=torch.float64,
        )
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            table = table.to(device)
            dist.all_reduce(table)
            table = table.cpu()
        if self.rho_rows == "paired":
            scores = table[:, 2]
        elif self.rho_rows == "mean":
            scores = table[:, 0] / table[:, 1].clamp(min=1.0)
        else:
            scores = table[:, 0]
        return dict(zip(self.modalities, scores.tolist(), strict=True))

    def after_backward(
        self, model: nn.Module, stats: dict[str, ModalityStats], ctx: StepContext
    ) -> dict[str, float]:
        if unwrap(model).unimodal_source == "heads" and min(self.weights[m] for m in self.modalities) == 0:
            raise ValueError(
                "ogm-ge measures its discrepancy on the unimodal logits, and separate heads only learn "
                "from a unimodal loss: set --method-opt unimodal_weight > 0, or use concat/sum split logits"
            )
        scores = self._global_scores(stats)
        if min(scores.values()) <= 0:  # a modality without rows: no ratio this step
            return {}
        ratios = discrepancy_ratios(scores)
        coeffs = modulation_coefficients(ratios, self.alpha, self.shifted)
        extra = {**{f"rho/{m}": r for m, r in ratios.items()}, **{f"k/{m}": k for m, k in coeffs.items()}}
        if self.starts <= ctx.epoch <= self.ends:
            self.modulate(unwrap(model), coeffs, ctx.step)
        return extra

    def modulate(self, model: nn.Module, coeffs: dict[str, float], step: int) -> None:
        """Scale (and with GE, perturb) the selected encoder gradients in place."""
        generator: torch.Generator | None = None
        for m in self.modalities:
            for p in model.encoder(m).parameters():
                if p.grad is None or (self.params == "conv" and p.grad.dim() != 4):
                    continue
                if self.mode == "OGM":
                    p.grad.mul_(coeffs[m])
                    continue
                grad = p.grad
                if generator is None or generator.device != grad.device:
                    generator = torch.Generator(device=grad.device).manual_seed(self.seed * 1_000_003 + step)
                # std of the unscaled gradient, kept on the device (no host sync per parameter)
                std = (grad.std() if grad.numel() > 1 else grad.new_zeros(())) + 1e-8
                noise = torch.randn(grad.shape, generator=generator, device=grad.device, dtype=grad.dtype)
                grad.mul_(coeffs[m]).addcmul_(noise, std)
