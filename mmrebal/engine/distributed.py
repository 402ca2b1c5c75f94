"""DDP for ``torchrun --nproc-per-node N -m mmrebal train``: process group, model wrapping, reductions.

Every rank runs an identical sampler (same seed) and trains on its shard of each plan. Step feedback
is all-reduced so every sampler sees the same global numbers and stays in sync without exchanging
plans; scoring passes are computed on each rank's shard of the split and gathered.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel

from mmrebal.evaluation.scores import ScoreResult


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job (``world == 1``: no process group)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def from_environment() -> DistContext:
    """The torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    return DistContext(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init_process_group(ctx: DistContext, device: torch.device) -> None:
    """nccl on CUDA, gloo on CPU; a no-op for a single process."""
    if not ctx.enabled or torch_dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch_dist.init_process_group(backend, rank=ctx.rank, world_size=ctx.world)


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


class _DDP(DistributedDataParallel):
    """DDP that still answers the wrapped model's attributes (``modalities``, ``encoder(m)``, ``head(m)``),
    so methods drive a wrapped and an unwrapped model alike."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)


def wrap_model(model: torch.nn.Module, ctx: DistContext, device: torch.device) -> torch.nn.Module:
    """DDP-wrapped model for training; unused parameters are expected (a plan may leave a modality out)."""
    if not ctx.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return _DDP(model, device_ids=ids, find_unused_parameters=True)


def all_reduce_sum(ctx: DistContext, values: np.ndarray, device: torch.device) -> np.ndarray:
    """Element-wise sum over ranks (float64), identity for one process."""
    if not ctx.enabled:
        return values
    tensor = torch.as_tensor(values, dtype=torch.float64, device=device)
    torch_dist.all_reduce(tensor)
    return tensor.cpu().numpy()


def gather_scores(
    ctx: DistContext, num_samples: int, positions: np.ndarray, local: ScoreResult
) -> ScoreResult:
    """Reassemble per-rank scoring results of disjoint ``positions`` into split order."""
    if not ctx.enabled:
        return local
    parts: list[Any] = [None] * ctx.world
    torch_dist.all_gather_object(parts, (positions, local))
    order = np.concatenate([p for p, _ in parts])
    inverse = np.empty(num_samples, dtype=np.int64)
    inverse[order] = np.arange(len(order))
    return ScoreResult(
        labels=np.concatenate([r.labels for _, r in parts])[inverse],
        probs={s: np.concatenate([r.probs[s] for _, r in parts])[inverse] for s in local.probs},
        losses={s: np.concatenate([r.losses[s] for _, r in parts])[inverse] for s in local.losses},
    )


def assert_in_sync(ctx: DistContext, what: str, state: Any) -> None:
    """Stop with a clear error if ``state`` (e.g. a sampler's state dict) differs between ranks."""
    if not ctx.enabled:
        return
    digests: list[Any] = [None] * ctx.world
    torch_dist.all_gather_object(digests, hashlib.sha1(pickle.dumps(state)).hexdigest())
    if len(set(digests)) > 1:
        raise RuntimeError(
            f"DDP ranks diverged: {what} differs between ranks; the sampler must draw only from its rng"
        )


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        torch_dist.barrier()
