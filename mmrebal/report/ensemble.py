"""The unimodal ensemble: a reference row built from separately trained ``--method unimodal`` runs.

For each dataset with one unimodal group per modality (at least two modalities), the runs of the
same seed are combined: their softmax probabilities on the report's split, read from each run's
``predictions.parquet`` (written by ``mmrebal score RUN --split SPLIT``, best checkpoint), are
averaged per sample (joined on ``sample_id``) and scored like any run. The row is the mean ± std
over the seeds that every modality has. A run without matching predictions is named in a warning
with the command that writes them, and the row is left out rather than built from fewer runs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl

from mmrebal.evaluation.metrics import classification_metrics
from mmrebal.report.runs import Run, RunGroup
from mmrebal.report.tables import Stat, stat_of

LABEL = "Unimodal ensemble"


def run_probabilities(run: Run, modality: str, split: str) -> tuple[pl.DataFrame | None, str | None]:
    """(sample_id, label, probs) of a unimodal run on ``split``, or the reason there are none."""
    scores, predictions = run.path / "scores.json", run.path / "predictions.parquet"
    fix = f"run `mmrebal score {run.path} --split {split}` to include it in the {LABEL.lower()}"
    if not scores.exists() or not predictions.exists():
        return None, f"{run.path}: no predictions.parquet; {fix}"
    written = json.loads(scores.read_text())
    if written.get("split") != split or Path(str(written.get("checkpoint", ""))).name != "best.pt":
        return None, f"{predictions}: scored on {written.get('split')!r} / {written.get('checkpoint')}; {fix}"
    frame = pl.read_parquet(predictions)
    column = f"prob_{modality}"
    if column not in frame.columns:
        return None, f"{predictions}: no {column} column; {fix}"
    return frame.select("sample_id", "label", pl.col(column).alias("probs")), None


def ensemble_metrics(frames: list[pl.DataFrame]) -> dict[str, float]:
    """Metrics of the per-sample mean of the runs' probabilities (the samples all runs scored)."""
    joined = frames[0].rename({"probs": "p0"})
    for k, frame in enumerate(frames[1:], 1):
        joined = joined.join(frame.rename({"probs": f"p{k}", "label": f"label{k}"}), on="sample_id")
        if (joined["label"] != joined[f"label{k}"]).any():
            raise ValueError("the unimodal runs disagree on the labels of the same sample ids")
    probs = np.mean([np.stack(joined[f"p{k}"].to_list()) for k in range(len(frames))], axis=0)
    return classification_metrics(joined["label"].to_numpy(), probs)


def unimodal_ensembles(
    groups: list[RunGroup], split: str, metrics: list[str]
) -> tuple[dict[str, dict[str, dict[str, Stat]]], list[str]]:
    """``{LABEL: {dataset: {metric column: Stat}}}`` for the datasets that have one, and warnings."""
    by_dataset: dict[str, dict[str, list[RunGroup]]] = defaultdict(lambda: defaultdict(list))
    for g in groups:
        if g.unimodal_modality:
            by_dataset[g.dataset][g.unimodal_modality].append(g)
    rows: dict[str, dict[str, Stat]] = {}
    warnings: list[str] = []
    for dataset, per_modality in sorted(by_dataset.items()):
        if len(per_modality) < 2:
            continue
        twice = sorted(m for m, gs in per_modality.items() if len(gs) > 1)
        if twice:
            warnings.append(f"{LABEL} on {dataset}: several unimodal groups for {', '.join(twice)}; left out")
            continue
        seeds = set.intersection(*({r.seed for r in gs[0].runs} for gs in per_modality.values()))
        values: dict[str, list[float]] = defaultdict(list)
        problems: list[str] = []
        for seed in sorted(s for s in seeds if s is not None):
            frames = []
            for modality, (group,) in sorted(per_modality.items()):
                run = next(r for r in group.runs if r.seed == seed)
                frame, problem = run_probabilities(run, modality, split)
                if problem:
                    problems.append(problem)
                frames.append(frame)
            if not problems:
                for m, v in ensemble_metrics(frames).items():
                    values[m].append(100.0 * v)
        if problems or not values:
            warnings += problems or [f"{LABEL} on {dataset}: no seed shared by every modality; left out"]
            continue
        stats = {m: stat_of(values[m]) for m in metrics if m in values}
        rows[dataset] = {m: s for m, s in stats.items() if s is not None}
    return ({LABEL: rows} if rows else {}), warnings
