"""Uniform sampling: the papers' baseline — shuffled full multimodal batches, every sample once per epoch."""

from __future__ import annotations

import math
from collections.abc import Iterator

from mmrebal.samplers import SAMPLERS
from mmrebal.samplers.base import Group, Plan, Sampler


@SAMPLERS.register("uniform")
class UniformSampler(Sampler):
    def epoch_steps(self, epoch: int) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def plans(self, epoch: int) -> Iterator[Plan]:
        order = self.rng.permutation(self.num_samples)
        for start in range(0, self.num_samples, self.batch_size):
            yield Plan([Group(order[start : start + self.batch_size], self.modalities, fused=True)])
