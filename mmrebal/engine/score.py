"""Score a finished (or running) run's checkpoint on a split: ``scores.json`` + ``predictions.parquet``.

Everything needed to rebuild the model is inside the checkpoint (its config as a plain dict), so a
checkpoint copied elsewhere scores on its own as long as its cache path is reachable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmrebal.cache.dataset import CacheDataset
from mmrebal.cache.format import read_info
from mmrebal.data.device import resolve_device
from mmrebal.data.loading import decide_preload
from mmrebal.engine.build import build_components
from mmrebal.engine.checkpoint import load_run_checkpoint
from mmrebal.engine.display import Display
from mmrebal.engine.traces import write_parquet
from mmrebal.evaluation.scores import ScoreResult, kl_to_uniform, prediction_similarity
from mmrebal.evaluation.scoring import scope_metrics, score_split
from mmrebal.storage import atomic_write_bytes


def checkpoint_path(run_dir: Path, checkpoint: str) -> Path:
    """``best`` / ``last`` inside the run dir, or a path as given."""
    if checkpoint in ("best", "last"):
        return Path(run_dir) / "checkpoints" / f"{checkpoint}.pt"
    return Path(checkpoint)


def prediction_rows(dataset: CacheDataset, result: ScoreResult) -> list[dict[str, Any]]:
    """Per sample: id, position, label, softmax vectors per scope, KL to uniform (bits) per modality,
    and the prediction similarity (cosine of the unimodal softmax vectors, mean over pairs)."""
    modalities = dataset.modalities
    kl = {m: kl_to_uniform(result.probs[m]) for m in modalities}
    similarity = prediction_similarity(result.probs, modalities)
    rows = []
    for i, label in enumerate(result.labels):
        row: dict[str, Any] = {"sample_id": dataset.sample_ids[i], "idx": i, "label": int(label)}
        row.update({f"prob_{scope}": probs[i].tolist() for scope, probs in result.probs.items()})
        row.update({f"kl_uniform_{m}": float(kl[m][i]) for m in modalities})
        row["similarity"] = float(similarity[i])
        rows.append(row)
    return rows


def score_run(
    run_dir: Path,
    split: str = "test",
    checkpoint: str = "best",
    device: str = "auto",
    batch_size: int | None = None,
    display: Display | None = None,
) -> dict[str, Any]:
    """Score ``checkpoint`` of ``run_dir`` on ``split``; writes scores.json and predictions.parquet.
    ``display`` shows what is scored and a bar over the split."""
    run_dir = Path(run_dir)
    ckpt_path = checkpoint_path(run_dir, checkpoint)
    target = resolve_device(device)
    ckpt, config = load_run_checkpoint(ckpt_path)
    info = read_info(config.cache)
    model, method = build_components(config, info, target)
    model.load_state_dict(ckpt["model"])
    method.load_state_dict(ckpt["method"])
    dataset = CacheDataset(config.cache, split, preload=decide_preload(config.preload, Path(config.cache)))
    epoch = int(ckpt["run"]["epoch"])
    if display is None:
        result = score_split(model, method, dataset, target, batch_size or config.eval_batch_size)
    else:
        display.print(
            f"{ckpt_path} (epoch {epoch + 1}) on {split}: {len(dataset)} samples of {config.cache}, {target}"
        )
        with display.phase(f"scoring {split}", len(dataset)) as advance:
            result = score_split(
                model, method, dataset, target, batch_size or config.eval_batch_size, on_batch=advance
            )
    scores = {
        "run_dir": str(run_dir),
        "checkpoint": str(ckpt_path),
        "epoch": epoch,
        "split": split,
        "num_samples": len(dataset),
        "scores": scope_metrics(result),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(run_dir / "scores.json", json.dumps(scores, indent=2).encode())
    write_parquet(run_dir / "predictions.parquet", prediction_rows(dataset, result))
    return scores
