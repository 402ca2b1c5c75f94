"""Cost of the samplers' scoring pass beside a training epoch, on the same model and train split.

Remix scores the train split before every epoch after its warm-up, BSS-L every ``period`` epochs,
BSS once; each pass is ``Trainer.score`` (the batched, no-grad, eval-mode ``score_split`` that
``mmrebal score`` also uses). The issue's goal is a pass costing <= 0.35x of a training epoch.
Epochs and passes alternate so machine load hits both alike; the table reports medians.

    python benchmarks/scoring.py [--cache X.h5] [--train-samples 2295] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from train_step import synthetic_cache

from mmrebal.engine.build import build_run
from mmrebal.engine.config import resolve_config
from mmrebal.engine.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=None, help="default: synthetic, avmnist shapes")
    parser.add_argument("--train-samples", type=int, default=2295, help="the default avmnist train split")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    epoch_s: list[float] = []
    score_s: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or synthetic_cache(Path(tmp) / "bench.h5", args.train_samples)
        config = resolve_config({"cache": str(cache), "out": str(Path(tmp) / "run"), "device": "cpu"})
        trainer = Trainer(build_run(config), console=Console(quiet=True))
        trainer.prepare_run_dir()
        train = trainer.datasets["train"]
        for epoch in range(args.repeats + 1):  # round 0 warms both up and is not counted
            started = time.perf_counter()
            trainer.train_epoch(epoch)
            trained = time.perf_counter() - started
            started = time.perf_counter()
            trainer.score(train)
            scored = time.perf_counter() - started
            if epoch:
                epoch_s.append(trained)
                score_s.append(scored)

    epoch_med, score_med = statistics.median(epoch_s), statistics.median(score_s)
    table = Table(title=f"scoring pass vs training epoch, {len(train)} train samples, {args.threads} threads")
    for column in ("measure", "seconds (median)", "ratio to epoch"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    table.add_row("training epoch (uniform, joint, cpu preset)", f"{epoch_med:.2f}", "1.00")
    table.add_row(
        "scoring pass over train (fused + every modality)", f"{score_med:.2f}", f"{score_med / epoch_med:.2f}"
    )
    Console().print(table)


if __name__ == "__main__":
    main()
