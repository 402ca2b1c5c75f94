"""One short training run on an adapter-built cache, shared by the adapter end-to-end tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from mmrebal.engine.config import resolve_config
from mmrebal.engine.trainer import train


def train_briefly(
    cache: Path, out: Path, sampler: str, encoders: str = "cnn", **options: Any
) -> pl.DataFrame:
    """One epoch, tiny model, CPU; returns steps.parquet after checking the run completed."""
    config = resolve_config(
        {
            "cache": str(cache),
            "out": str(out),
            "epochs": 1,
            "batch_size": 4,
            "eval_batch_size": 8,
            "feature_dim": 8,
            "encoders": encoders,
            "model_options": {"encoder_options": options.pop("encoder_options", {})},
            "device": "cpu",
            "seed": 0,
            "sampler": sampler,
            "sampler_options": options,
        }
    )
    summary = train(config)
    assert summary["status"] == "complete"
    return pl.read_parquet(out / "steps.parquet")
