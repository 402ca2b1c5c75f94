"""Two-process DDP on CPU (gloo) through a real ``torchrun``: the run completes, and every rank's sampler saw
the same global feedback (DUS-H decides from it; the trainer checks the samplers' states agree each epoch)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch
from _tiny_cache import build_tiny_cache

from mmrebal.engine.checkpoint import load_checkpoint


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path: Path) -> None:
    cache = build_tiny_cache(tmp_path / "tiny.h5", n=60, num_classes=3, seed=3)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "mmrebal", "train", "--cache", str(cache), "--out", str(out), "--epochs", "2",
           "--batch-size", "12", "--feature-dim", "16", "--device", "cpu", "--sampler", "dus-h"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pipe = subprocess.PIPE
    proc = subprocess.Popen(
        cmd, stdout=pipe, stderr=pipe, text=True, env=env, cwd=tmp_path, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun's workers too, not only the launcher
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete"
    steps = pl.read_parquet(out / "steps.parquet")
    # 36 train rows, 3 steps per epoch, each split over the ranks; the trace holds all-reduced numbers.
    # DUS-H gives the modality it finds dominant (from the global feedback) f(T) = 8 rows in epoch 0
    # after step 0 (beta 0.5, E = 2: round(0.5 * sqrt(2) * 12)) and full batches in epoch 1.
    assert steps["step"].unique().sort().to_list() == list(range(6))
    sizes = steps.group_by("step").agg(pl.col("batch_size").sort()).sort("step")["batch_size"].to_list()
    assert sizes == [[12, 12], [8, 12], [8, 12], [12, 12], [12, 12], [12, 12]]
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert stdout.count("epoch 1/2") == 1  # only rank 0 logs
