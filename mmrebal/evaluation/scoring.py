"""The batched no-grad scoring pass, shared by validation/test, ``mmrebal score`` and the samplers.

It runs the method's ``predict`` (so MLA's test-time fusion is what gets scored) over split
positions in order and returns softmax probabilities and per-sample cross-entropy per scope
(``fused`` and each modality).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from mmrebal.cache.dataset import CacheDataset
from mmrebal.data.device import device_batch
from mmrebal.data.loading import LoaderSettings, batch_loader
from mmrebal.evaluation.metrics import classification_metrics
from mmrebal.evaluation.scores import ScoreResult

if TYPE_CHECKING:
    from mmrebal.methods import Method


def score_split(
    model: torch.nn.Module,
    method: Method,
    dataset: CacheDataset,
    device: torch.device,
    batch_size: int,
    *,
    positions: Sequence[int] | None = None,
    loading: LoaderSettings | None = None,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
    on_batch: Callable[[int], None] | None = None,
    train_mode: bool = False,
) -> ScoreResult:
    """Score ``positions`` (default: the whole split) in order; restores the model's train/eval mode.
    ``on_batch(rows)`` follows the pass (a progress bar). The pass's loader is its own (workers
    start and stop with it), so ``loading.persistent`` is dropped. ``train_mode`` runs the model in
    train mode (BatchNorm normalises with each batch's statistics and updates its running ones), for
    a sampler whose reference measures that way; there is no gradient either way.
    """
    pos = np.arange(len(dataset)) if positions is None else np.asarray(positions, dtype=np.int64)
    chunks = [pos[i : i + batch_size].tolist() for i in range(0, len(pos), batch_size)]
    scopes = ["fused", *dataset.modalities]
    probs: dict[str, list[np.ndarray]] = {s: [] for s in scopes}
    losses: dict[str, list[np.ndarray]] = {s: [] for s in scopes}
    was_training = model.training
    model.train(train_mode)
    try:
        with torch.no_grad():
            settings = dataclasses.replace(loading, persistent=False) if loading else None
            for batch in batch_loader(dataset, chunks, device, settings):
                batch = device_batch(batch, dataset.info.modalities, device)
                with autocast():
                    out = method.predict(model, batch)
                logits = {"fused": out.fused_logits, **out.unimodal_logits}
                for scope in scopes:
                    z = logits[scope].float()
                    probs[scope].append(torch.softmax(z, dim=1).cpu().numpy())
                    losses[scope].append(F.cross_entropy(z, batch["label"], reduction="none").cpu().numpy())
                if on_batch is not None:
                    on_batch(len(batch["label"]))
    finally:
        model.train(was_training)
    empty_probs = np.zeros((0, dataset.num_classes), np.float32)
    return ScoreResult(
        labels=dataset.labels[pos].astype(np.int64),
        probs={s: np.concatenate(v) if v else empty_probs for s, v in probs.items()},
        losses={s: np.concatenate(v) if v else np.zeros(0, np.float32) for s, v in losses.items()},
    )


def scope_metrics(result: ScoreResult) -> dict[str, dict[str, float]]:
    """acc, MAP, macro-F1 and mean cross-entropy for ``fused`` and each modality."""
    return {
        scope: {**classification_metrics(result.labels, probs), "loss": float(np.mean(result.losses[scope]))}
        for scope, probs in result.probs.items()
    }
