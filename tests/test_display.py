"""The live display: the start banner, epoch bars whose totals are the steps the epoch really takes,
scoring/validation bars, and 1-based epoch lines."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import torch
from _tiny_cache import build_tiny_cache
from rich.console import Console
from sampler_helpers import make, run_epoch

from mmrebal.cli.describe import load
from mmrebal.engine.config import resolve_config
from mmrebal.engine.trainer import train

torch.set_num_threads(1)
# options that make each sampler change its epoch length within four epochs
OPTIONS = {"remix": {"warmup": 1}, "bss": {"t_grow": 3}, "bss-l": {"drop_last": True}}


@pytest.mark.parametrize("name", sorted(load("sampler")))
def test_epoch_steps_is_the_number_of_plans(name: str) -> None:
    sampler = make(name, n=43, batch=8, epochs=4, **OPTIONS.get(name, {}))
    announced: list[int | None] = []
    counted = [len(run_epoch(sampler, epoch, announced=announced)) for epoch in range(4)]
    assert announced == counted


def _run(tmp_path: Path, terminal: bool, **options) -> str:
    cache = build_tiny_cache(tmp_path / "tiny.h5", n=40, num_classes=2, seed=3)
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=200, color_system=None)
    config = resolve_config(
        {
            "cache": str(cache),
            "out": str(tmp_path / "run"),
            "epochs": 2,
            "batch_size": 8,
            "feature_dim": 8,
            "device": "cpu",
            **options,
        }  # fmt: skip
    )
    train(config, console)
    return out.getvalue()


@pytest.mark.slow
def test_banner_and_epoch_lines(tmp_path: Path) -> None:
    text = _run(tmp_path, False, sampler="remix", sampler_options={"warmup": 1})
    lines = text.splitlines()
    assert lines[0] == f"mmrebal train -> {tmp_path / 'run'}"
    banner = "\n".join(lines[:8])
    assert "device   cpu" in banner and "float32" in banner
    assert f"cache    {tmp_path / 'tiny.h5'} (audio, visual; 2 classes)" in banner
    assert "splits   train 24, val 8, test 8" in banner
    assert "sampler  remix (warmup=1)" in banner and "method   joint" in banner
    assert "concat fusion" in banner and "2 epochs, batch 8, 3 steps in epoch 1" in banner
    epochs = [ln for ln in lines if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in epochs] == ["1/2", "2/2"]
    assert all(re.search(r"samples/s  \d+\.\d s", ln) for ln in epochs)


@pytest.mark.slow
def test_terminal_shows_epoch_scoring_and_validation_bars(tmp_path: Path) -> None:
    text = _run(tmp_path, True, sampler="remix", sampler_options={"warmup": 1})
    assert re.search(r"epoch 1/2 .* 3/3 steps  loss \d\.\d{4}  \d+ samples/s", text)
    assert re.search(r"scoring train \(epoch 2\) .* 24/24 samples", text)  # Remix's pass, real total
    assert re.search(r"validating .* 8/8 samples", text)
    assert re.search(r"test \(selected epoch \d\) .* 8/8 samples", text)
