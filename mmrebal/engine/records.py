"""What the loop and the hooks exchange: one step after the all-reduce, one epoch as it fills up."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from mmrebal.engine import distributed
from mmrebal.engine.distributed import DistContext
from mmrebal.methods import StepResult


@dataclass
class RunState:
    """Counters that a checkpoint carries besides the modules' own states."""

    epoch: int = -1  # last completed epoch
    global_step: int = 0
    best_epoch: int = -1
    best_acc: float = -math.inf
    best_loss: float = math.inf
    train_time_s: float = 0.0
    wall_time_s: float = 0.0
    train_samples: int = 0


@dataclass
class StepRecord:
    """One optimisation step after the all-reduce: what every rank's sampler and the traces see."""

    epoch: int
    step: int
    rows: int
    loss: float
    lr: float
    batch_size: dict[str, int]
    confidence_sum: dict[str, float]
    modality_loss: dict[str, float]
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class EpochRecord:
    """One epoch as the hooks see it; filled by the loop (steps, rate) and by the hooks (val, improved)."""

    epoch: int
    epochs: int
    started: float = field(default_factory=time.perf_counter)
    losses: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # scope -> (mean, rows)
    rate: float = 0.0  # train samples per second
    val: dict[str, dict[str, float]] = field(default_factory=dict)
    improved: bool = False  # the best validation result so far: best.pt is written

    def add(self, record: StepRecord) -> None:
        for m, n in record.batch_size.items():
            if n:
                self.losses.setdefault(m, []).append((record.modality_loss[m], n))
        self.losses.setdefault("total", []).append((record.loss, record.rows))

    def train_summary(self) -> dict[str, dict[str, float]]:
        """Train-split rows: the epoch's mean step losses per modality and of the whole objective (scope
        ``total``: what the method back-propagated); accuracy is not measured during training."""
        out = {}
        for scope, pairs in self.losses.items():
            n = sum(k for _, k in pairs)
            out[scope] = {"acc": math.nan, "map": math.nan, "macro_f1": math.nan,
                          "loss": sum(v * k for v, k in pairs) / max(n, 1)}  # fmt: skip
        return out

    def train_loss(self) -> float:
        return self.train_summary().get("total", {}).get("loss", math.nan)


def metric_row(epoch: int, split: str, scope: str, m: dict[str, float], selected: bool = False) -> dict:
    return {"epoch": epoch, "split": split, "scope": scope, "acc": m["acc"], "map": m["map"],
            "macro_f1": m["macro_f1"], "loss": m["loss"], "selected": selected}  # fmt: skip


def reduce_step(
    dist: DistContext,
    device: torch.device,
    modalities: list[str],
    epoch: int,
    step: int,
    rows: int,
    result: StepResult,
    lr: float,
) -> StepRecord:
    """Global step numbers: sizes and confidence sums summed, losses averaged by rows, over ranks."""
    stats = result.modality
    sizes = [stats[m].batch_size if m in stats else 0 for m in modalities]
    extra_keys = sorted(result.extra)
    vector = [float(rows), result.loss * rows]
    for m, n in zip(modalities, sizes, strict=True):
        vector += [n, stats[m].confidence_sum if n else 0.0, stats[m].loss * n if n else 0.0]
    vector += [result.extra[k] for k in extra_keys]
    total = distributed.all_reduce_sum(dist, np.asarray(vector, dtype=np.float64), device)
    n_rows = int(total[0])
    end = 2 + 3 * len(modalities)
    per = dict(zip(modalities, total[2:end].reshape(-1, 3), strict=True))
    return StepRecord(
        epoch=epoch,
        step=step,
        rows=n_rows,
        loss=float(total[1] / max(n_rows, 1)),
        lr=lr,
        batch_size={m: int(p[0]) for m, p in per.items()},
        confidence_sum={m: float(p[1]) for m, p in per.items()},
        modality_loss={m: float(p[2] / p[0]) if p[0] else math.nan for m, p in per.items()},
        extra={k: float(v) / dist.world for k, v in zip(extra_keys, total[end:], strict=True)},
    )
