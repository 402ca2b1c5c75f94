"""``fused``: CE on the fused prediction only — the classic late-fusion baseline (OGM-GE's "Baseline").

The fused term covers the rows the plan marks ``fused``; the unimodal predictions get no loss of
their own but are still measured (confidence sums and CE) for the samplers' feedback and the traces.
A sampler's ``ctx.loss_weights`` still override the weights key by key (Remix's loss is part of Remix).
"""

from __future__ import annotations

from collections.abc import Sequence

from mmrebal.methods import METHODS
from mmrebal.methods.joint import WeightedLoss


@METHODS.register("fused")
class Fused(WeightedLoss):
    def __init__(self, modalities: Sequence[str]) -> None:
        super().__init__(modalities, fused_weight=1.0, unimodal_weight=0.0)
