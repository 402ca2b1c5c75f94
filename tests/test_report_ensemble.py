"""The unimodal-ensemble reference row: averaged probabilities of separately trained unimodal runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
from test_report import table_row, write_run

from mmrebal.evaluation.metrics import classification_metrics
from mmrebal.report import write_report

LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1])


def write_predictions(run: Path, modality: str, seed: int, split: str = "test") -> np.ndarray:
    """scores.json + predictions.parquet as ``mmrebal score`` writes them; returns the probabilities."""
    rng = np.random.default_rng([seed, len(modality)])
    probs = rng.dirichlet(np.ones(3), size=len(LABELS))
    (run / "scores.json").write_text(
        json.dumps({"split": split, "checkpoint": str(run / "checkpoints/best.pt")})
    )
    rows = [{"sample_id": f"t{i}", "idx": i, "label": int(y), "prob_fused": probs[i].tolist(),
             f"prob_{modality}": probs[i].tolist()} for i, y in enumerate(LABELS)]  # fmt: skip
    pl.DataFrame(rows[::-1]).write_parquet(run / "predictions.parquet")  # row order must not matter
    return probs


def test_ensemble_row_is_the_mean_over_seeds_of_averaged_probabilities(tmp_path: Path):
    root = tmp_path / "sweep"
    accs = []
    for seed in (0, 1):
        write_run(root, "uniform", "joint", seed)
        probs = [
            write_predictions(write_run(root, "uniform", "unimodal", seed, modality=m), m, seed)
            for m in ("audio", "visual")
        ]
        accs.append(100 * classification_metrics(LABELS, (probs[0] + probs[1]) / 2)["acc"])
    outcome = write_report([root], tmp_path / "report.md")
    row = table_row(outcome.path.read_text(), "Unimodal ensemble")
    assert row[1] == "2"
    assert row[2] == f"{np.mean(accs):.2f} ± {np.std(accs, ddof=1):.2f}"
    assert not [w for w in outcome.warnings if "ensemble" in w]


def test_missing_or_mismatched_predictions_leave_the_row_out_with_the_command(tmp_path: Path):
    root = tmp_path / "sweep"
    audio = write_run(root, "uniform", "unimodal", 0, modality="audio")
    visual = write_run(root, "uniform", "unimodal", 0, modality="visual")
    write_predictions(audio, "audio", 0)
    outcome = write_report([root], tmp_path / "report.md")
    assert "Unimodal ensemble" not in outcome.path.read_text().split("## Main results", 1)[1].split("##")[0]
    assert f"{visual}: no predictions.parquet; run `mmrebal score {visual} --split test`" in " ".join(
        outcome.warnings
    )
    write_predictions(visual, "visual", 0, split="val")
    outcome = write_report([root], tmp_path / "report.md", force=True)
    assert any("scored on 'val'" in w for w in outcome.warnings)
