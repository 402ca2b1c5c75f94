"""Every sampler composes with every method: each pair trains two short epochs end to end.

Both registries are enumerated, so a new sampler or method joins the grid by being registered."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _tiny_cache import build_tiny_cache
from test_sampler_train import CASES

from mmrebal.engine.config import resolve_config
from mmrebal.engine.trainer import train
from mmrebal.methods import METHODS
from mmrebal.samplers import SAMPLERS

torch.set_num_threads(1)
# what a method needs besides defaults to run on the tiny audio-visual cache
METHOD_SETUP = {"mla": {"fusion": "shared"}, "unimodal": {"method_options": {"modality": "audio"}}}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cache(tmp_path_factory.mktemp("grid") / "c.h5", n=48, num_classes=3, seed=2)


def test_the_grid_covers_every_registered_name():
    assert {"smv", "dus", "remix"} <= set(SAMPLERS.names())
    assert {"fused", "pmr", "agm", "joint"} <= set(METHODS.names())
    assert set(CASES) <= set(SAMPLERS.names())


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS.names()))
@pytest.mark.parametrize("sampler", sorted(SAMPLERS.names()))
def test_sampler_and_method_train_together(sampler: str, method: str, cache: Path, tmp_path: Path) -> None:
    options = CASES.get(sampler, ({},))[0]
    config = resolve_config(
        {
            "cache": str(cache),
            "out": str(tmp_path / "run"),
            "epochs": 2,
            "batch_size": 12,
            "feature_dim": 8,
            "device": "cpu",
            "seed": 3,
            "sampler": sampler,
            "sampler_options": options,
            "method": method,
            "model_options": {"encoder_options": {m: {"channels": [8, 16]} for m in ("audio", "visual")}},
            **METHOD_SETUP.get(method, {}),
        }
    )
    summary = train(config)
    assert summary["status"] == "complete"
    assert 0.0 <= summary["test"]["fused"]["acc"] <= 1.0
