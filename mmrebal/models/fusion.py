"""Fusion modules: features of m >= 2 modalities (in model order) -> fused logits ``[B, C]``.

Fusions whose output is a sum of per-modality terms also expose *split* logits
(:meth:`Fusion.split_logits`), each modality's share of the fused logits. These are what OGM-GE's
reference measures its discrepancy on:

- ``concat``: fused = W [f_1; ...; f_m] + b, split_m = W_m f_m + b / m (W_m: the columns of
  modality m), so the split logits sum exactly to the fused logits.
- ``sum``: fused = sum_m (W_m f_m + b_m), split_m = W_m f_m + b_m / m (OGM-GE's reference halves
  each bias for its two modalities).
- ``shared`` (MLA): one head H for every modality, split_m = H f_m, fused = sum_m w_m H f_m with
  fixed weights (MLA's test-time fusion, fixed or entropy-based, lives in the ``mla`` method).

``film`` and ``gated`` mix modalities non-linearly and have no split logits. Their m-modality
generalisation reduces exactly to the reference's two-modality modules (x_film / x_gate = True):

- ``film``: the *target* modality (default the last) is modulated by the concatenation of all the
  others: [gamma, beta] = Linear(concat others), fused = fc_out(gamma * f_target + beta).
- ``gated``: the *gate* modality (default the first) gates the sum of the others' projections:
  fused = fc_out(sigmoid(fc_gate(f_gate)) * sum_{j != gate} fc_j(f_j)).

Masked (zero) features pass through every fusion unchanged, so absent modalities add nothing but
biases.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmrebal.registry import Registry


def init_linear(layer: nn.Linear) -> nn.Linear:
    """Xavier-normal weights and zero bias, the OGM-GE reference's ``weight_init`` for linear layers."""
    nn.init.xavier_normal_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Fusion(nn.Module):
    """Base class; ``has_split`` says whether :meth:`split_logits` is defined."""

    has_split = False

    def __init__(self, modalities: Sequence[str], feature_dim: int, num_classes: int) -> None:
        super().__init__()
        if len(modalities) < 2:
            raise ValueError("fusion needs at least two modalities")
        self.modalities = list(modalities)
        self.feature_dim = feature_dim
        self.num_classes = num_classes

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def split_logits(self, index: int, feature: torch.Tensor) -> torch.Tensor:
        """Modality ``index``'s share of the fused logits (only where ``has_split``)."""
        raise NotImplementedError(f"{type(self).__name__} has no per-modality split logits")

    def _index(self, name: str | None, default: int) -> int:
        if name is None:
            return default % len(self.modalities)
        if name not in self.modalities:
            raise ValueError(f"no modality {name!r}; the model has {', '.join(self.modalities)}")
        return self.modalities.index(name)


FUSIONS: Registry[type[Fusion]] = Registry(
    "fusion", "mmrebal.models", reserved=("modalities", "feature_dim", "num_classes")
)


@FUSIONS.register("concat")
class ConcatFusion(Fusion):
    has_split = True

    def __init__(self, modalities: Sequence[str], feature_dim: int, num_classes: int) -> None:
        super().__init__(modalities, feature_dim, num_classes)
        self.fc_out = init_linear(nn.Linear(len(modalities) * feature_dim, num_classes))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.fc_out(torch.cat(features, dim=1))

    def split_logits(self, index: int, feature: torch.Tensor) -> torch.Tensor:
        d = self.feature_dim
        weight = self.fc_out.weight[:, index * d : (index + 1) * d]
        return feature @ weight.t() + self.fc_out.bias / len(self.modalities)


@FUSIONS.register("sum")
class SumFusion(Fusion):
    has_split = True

    def __init__(self, modalities: Sequence[str], feature_dim: int, num_classes: int) -> None:
        super().__init__(modalities, feature_dim, num_classes)
        self.fcs = nn.ModuleList(init_linear(nn.Linear(feature_dim, num_classes)) for _ in modalities)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([fc(f) for fc, f in zip(self.fcs, features, strict=True)]).sum(0)

    def split_logits(self, index: int, feature: torch.Tensor) -> torch.Tensor:
        fc = self.fcs[index]
        return feature @ fc.weight.t() + fc.bias / len(self.modalities)


@FUSIONS.register("film")
class FiLMFusion(Fusion):
    def __init__(
        self, modalities: Sequence[str], feature_dim: int, num_classes: int, target: str | None = None
    ) -> None:
        super().__init__(modalities, feature_dim, num_classes)
        self.target = self._index(target, -1)
        self.fc = init_linear(nn.Linear((len(modalities) - 1) * feature_dim, 2 * feature_dim))
        self.fc_out = init_linear(nn.Linear(feature_dim, num_classes))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        condition = torch.cat([f for i, f in enumerate(features) if i != self.target], dim=1)
        gamma, beta = self.fc(condition).split(self.feature_dim, dim=1)
        return self.fc_out(gamma * features[self.target] + beta)


@FUSIONS.register("gated")
class GatedFusion(Fusion):
    def __init__(
        self, modalities: Sequence[str], feature_dim: int, num_classes: int, gate: str | None = None
    ) -> None:
        super().__init__(modalities, feature_dim, num_classes)
        self.gate = self._index(gate, 0)
        self.fcs = nn.ModuleList(init_linear(nn.Linear(feature_dim, feature_dim)) for _ in modalities)
        self.fc_out = init_linear(nn.Linear(feature_dim, num_classes))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        projected = [fc(f) for fc, f in zip(self.fcs, features, strict=True)]
        gate = torch.sigmoid(projected[self.gate])
        others = torch.stack([p for i, p in enumerate(projected) if i != self.gate]).sum(0)
        return self.fc_out(gate * others)


@FUSIONS.register("shared")
class SharedHead(Fusion):
    """MLA's single head shared by every modality; ``weights`` (modality -> w) default to 1/m."""

    has_split = True

    def __init__(
        self,
        modalities: Sequence[str],
        feature_dim: int,
        num_classes: int,
        weights: dict[str, float] | None = None,
    ) -> None:
        super().__init__(modalities, feature_dim, num_classes)
        self.head = init_linear(nn.Linear(feature_dim, num_classes))
        chosen = weights or {m: 1.0 / len(self.modalities) for m in self.modalities}
        missing = [m for m in self.modalities if m not in chosen]
        if missing:
            raise ValueError(f"shared fusion weights miss {', '.join(missing)}")
        self.weights = [float(chosen[m]) for m in self.modalities]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([w * self.head(f) for w, f in zip(self.weights, features, strict=True)]).sum(0)

    def split_logits(self, index: int, feature: torch.Tensor) -> torch.Tensor:
        return self.head(feature)
