"""`mmrebal score` reproduces a run's test numbers from its checkpoint and writes per-sample predictions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from _tiny_cache import build_tiny_cache
from typer.testing import CliRunner

from mmrebal.cli import app
from mmrebal.engine.config import resolve_config
from mmrebal.engine.trainer import train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("score")
    cache = build_tiny_cache(root / "tiny.h5", n=60, num_classes=3, seed=2)
    out = root / "run"
    config = {"cache": str(cache), "out": str(out), "epochs": 2, "batch_size": 12, "feature_dim": 16,
              "device": "cpu", "lr": 3e-3, "eval_batch_size": 7}  # fmt: skip
    return out, train(resolve_config(config))


def test_score_reproduces_the_run_test_numbers(run: tuple[Path, dict]) -> None:
    out, summary = run
    result = CliRunner().invoke(app, ["score", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "scores.json").read_text())
    assert scores["split"] == "test" and scores["epoch"] == summary["best_epoch"]
    assert set(scores["scores"]) == {"fused", "audio", "visual"}
    for scope, metrics in summary["test"].items():
        for key in ("acc", "map", "macro_f1", "loss"):
            assert scores["scores"][scope][key] == pytest.approx(metrics[key], rel=1e-6, abs=1e-9), (
                scope,
                key,
            )
    assert "fused" in result.output and "macro-F1" in result.output
    assert re.search(r"best\.pt \(epoch \d\) on test: \d+ samples of ", result.output)  # said before scoring

    pred = pl.read_parquet(out / "predictions.parquet")
    assert pred.height == 12
    assert {"sample_id", "idx", "label", "prob_fused", "prob_audio", "prob_visual", "kl_uniform_audio",
            "kl_uniform_visual", "similarity"} <= set(pred.columns)  # fmt: skip
    probs = np.stack(pred["prob_fused"].to_list())
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    acc = float(np.mean(probs.argmax(axis=1) == pred["label"].to_numpy()))
    assert acc == pytest.approx(summary["test"]["fused"]["acc"])
    audio = np.stack(pred["prob_audio"].to_list())
    kl = np.log2(3) + np.sum(audio * np.log2(audio), axis=1)  # KL(p || uniform) in bits
    np.testing.assert_allclose(pred["kl_uniform_audio"].to_numpy(), kl, rtol=1e-5)
    visual = np.stack(pred["prob_visual"].to_list())
    cosine = (audio * visual).sum(1) / np.linalg.norm(audio, axis=1) / np.linalg.norm(visual, axis=1)
    np.testing.assert_allclose(pred["similarity"].to_numpy(), cosine, rtol=1e-5)


def test_score_other_checkpoints_and_splits(run: tuple[Path, dict]) -> None:
    out, summary = run
    args = [
        "score",
        str(out),
        "--split",
        "val",
        "--checkpoint",
        str(out / "checkpoints" / "best.pt"),
        "--device",
        "cpu",
    ]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert json.loads((out / "scores.json").read_text())["scores"]["fused"]["acc"] == pytest.approx(
        summary["val"]["fused"]["acc"]
    )
    assert (
        CliRunner().invoke(app, ["score", str(out), "--checkpoint", "last", "--device", "cpu"]).exit_code == 0
    )


def test_score_missing_checkpoint_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["score", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == f"error: {tmp_path}/checkpoints/best.pt: no such checkpoint; train first or pass --checkpoint PATH"
    )
