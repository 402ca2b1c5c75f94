"""Two-process DDP on CPU (gloo) through a real ``torchrun``: the run completes and every rank's sampler saw
the same global feedback (the steps trace covers each train row exactly once per epoch)."""

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
           "-m", "mmrebal", "train", "--cache", str(cache), "--out", str(out), "--epochs", "1",
           "--batch-size", "12", "--feature-dim", "16", "--device", "cpu"]  # fmt: skip
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
    # 36 train rows, batches of 12 split 6 + 6 over the ranks; the trace holds the all-reduced sizes
    assert steps.filter(pl.col("modality") == "audio")["batch_size"].to_list() == [12, 12, 12]
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert stdout.count("epoch 0/0") == 1  # only rank 0 logs
