"""The multimodal classifier: one encoder per modality, a fusion module, and unimodal logits.

Absent modalities are masked at feature level: ``forward(batch, active)`` runs each encoder only on
the rows where its modality is active and puts zeros in the other rows, so modality-pure batches
(Remix) and partial batches (DUS) cost nothing for the modalities they do not carry, and BatchNorm
statistics only ever see real inputs.

Unimodal logits come from one of two sources (``unimodal_logits``):

- ``"split"``: the fusion's own per-modality share of the fused logits (``concat``: W_m f_m + b/m,
  as OGM-GE's reference computes them; ``shared``: the shared head applied to f_m). Default for the
  fusions that have them (concat, sum, shared), so OGM-GE measures its discrepancy on the reference's
  quantity and a unimodal loss trains the fusion layer's slice of that modality.
- ``"heads"``: a separate linear head per modality (default for film and gated, which have no split).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mmrebal.models.fusion import Fusion, SharedHead, init_linear

Batch = dict[str, Any]


@dataclass
class ModelOutput:
    features: dict[str, torch.Tensor]  # modality -> [B, D] (zeros on inactive rows)
    unimodal_logits: dict[str, torch.Tensor]  # modality -> [B, C]
    fused_logits: torch.Tensor  # [B, C]


def _rows(x: torch.Tensor | dict[str, torch.Tensor], rows: torch.Tensor) -> Any:
    if isinstance(x, dict):
        return {k: v.index_select(0, rows.to(v.device)) for k, v in x.items()}
    return x.index_select(0, rows.to(x.device))


def _batch_size(batch: Batch, active: torch.Tensor | None) -> int:
    if active is not None:
        return int(active.shape[0])
    return int(batch["label"].shape[0])


class MultimodalModel(nn.Module):
    def __init__(
        self,
        kinds: dict[str, str],
        encoders: dict[str, nn.Module],
        fusion: Fusion,
        feature_dim: int,
        num_classes: int,
        unimodal_logits: str | None = None,
    ) -> None:
        super().__init__()
        self.modalities: list[str] = list(kinds)
        self.kinds = dict(kinds)
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.encoders = nn.ModuleDict({m: encoders[m] for m in self.modalities})
        self.fusion = fusion
        source = unimodal_logits or ("split" if fusion.has_split else "heads")
        if source not in ("split", "heads"):
            raise ValueError(f"unimodal_logits must be 'split' or 'heads', not {source!r}")
        if source == "split" and not fusion.has_split:
            raise ValueError(
                f"{type(fusion).__name__} has no per-modality split logits; use unimodal_logits='heads'"
            )
        self.unimodal_source = source
        self.heads = (
            nn.ModuleDict({m: init_linear(nn.Linear(feature_dim, num_classes)) for m in self.modalities})
            if source == "heads"
            else None
        )

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimiser groups of the trainable parameters: one at ``lr`` first (the lr the traces log),
        then one per other multiplier an encoder's ``lr_scales`` asks for (layer-wise lr decay);
        frozen parameters are left out."""
        scale_of: dict[int, float] = {}
        for encoder in self.encoders.values():
            if hasattr(encoder, "lr_scales"):
                scale_of.update((id(param), scale) for param, scale in encoder.lr_scales())
        groups: dict[float, list[nn.Parameter]] = {1.0: []}
        for param in self.parameters():
            if param.requires_grad:
                groups.setdefault(scale_of.get(id(param), 1.0), []).append(param)
        return [{"params": ps, "lr": lr * scale} for scale, ps in sorted(groups.items(), key=lambda g: -g[0])]

    def encoder(self, modality: str) -> nn.Module:
        return self.encoders[modality]

    def head(self, modality: str) -> nn.Module:
        """The linear layer producing ``modality``'s unimodal logits (MLA: the shared head)."""
        if self.heads is not None:
            return self.heads[modality]
        if isinstance(self.fusion, SharedHead):
            return self.fusion.head
        raise ValueError(
            f"the {type(self.fusion).__name__} split logits of {modality!r} are a slice of the fusion layer, "
            "not a separate head; build the model with unimodal_logits='heads'"
        )

    def encode(self, modality: str, x: Any, mask: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """Features of ``modality``: encoded on the rows of ``mask``, zeros elsewhere."""
        encoder = self.encoders[modality]
        if mask is None or bool(mask.all()):
            return encoder(x)
        rows = mask.nonzero().squeeze(1)
        device = next(encoder.parameters()).device
        if rows.numel() == 0:
            return torch.zeros(batch_size, self.feature_dim, device=device)
        encoded = encoder(_rows(x, rows))
        out = torch.zeros(batch_size, self.feature_dim, device=encoded.device, dtype=encoded.dtype)
        return out.index_copy(0, rows.to(encoded.device), encoded)

    def unimodal(self, modality: str, feature: torch.Tensor) -> torch.Tensor:
        if self.heads is not None:
            return self.heads[modality](feature)
        return self.fusion.split_logits(self.modalities.index(modality), feature)

    def forward(self, batch: Batch, active: torch.Tensor | None = None) -> ModelOutput:
        """``active``: bool [B, m] in ``self.modalities`` order (None: every row carries everything)."""
        size = _batch_size(batch, active)
        if active is not None:
            active = active.cpu()  # row selection on the host: one transfer instead of a sync per mask
        features: dict[str, torch.Tensor] = {}
        for j, m in enumerate(self.modalities):
            mask = None if active is None else active[:, j]
            if m not in batch and (mask is None or bool(mask.any())):
                raise KeyError(f"the batch has no {m!r} input but rows ask for it; load that modality")
            features[m] = self.encode(m, batch.get(m), mask, size)
        dtype = functools.reduce(torch.promote_types, (f.dtype for f in features.values()))
        ordered = [features[m].to(dtype) for m in self.modalities]
        fused = self.fusion(ordered)
        unimodal = {m: self.unimodal(m, f) for m, f in zip(self.modalities, ordered, strict=True)}
        return ModelOutput(features=features, unimodal_logits=unimodal, fused_logits=fused)
