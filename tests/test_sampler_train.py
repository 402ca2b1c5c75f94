"""Every rebalancing sampler drives the real trainer end to end and leaves its decisions in the traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from _tiny_cache import build_tiny_cache

from mmrebal.engine.config import resolve_config
from mmrebal.engine.trainer import train
from mmrebal.samplers import SAMPLERS

torch.set_num_threads(1)

# name -> (options for a short run, step columns it adds, sample columns it writes or None); every
# registered sampler runs, one missing here with the defaults and no columns of its own expected.
CASES = {
    "dus": ({}, {"batch_size_planned", "policy_prob", "reward", "log_prob", "cum_score"}, None),
    "dus-h": ({}, {"batch_size_planned", "dominant", "cum_score"}, None),
    "dus-ds": ({}, {"batch_size_planned", "policy_prob", "cum_score"}, None),
    "remix": ({"warmup": 1}, set(), {"kl_uniform", "assigned"}),
    "bss": ({"t_grow": 2}, set(), {"similarity", "loss", "score", "order", "used"}),
    "bss-l": ({"mu": 0.5}, set(), {"similarity", "loss", "score", "order", "used"}),
    "smv": ({"warmup": 1}, set(), {"contribution", "copies"}),
}


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("cache")
    return {
        2: build_tiny_cache(root / "two.h5", n=60, num_classes=3, seed=1),
        3: build_tiny_cache(
            root / "three.h5", n=60, modalities=("audio", "visual", "depth"), num_classes=3, seed=1
        ),
    }


@pytest.mark.slow
@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("name", SAMPLERS.names())
def test_sampler_trains_and_traces(name: str, m: int, caches: dict[int, Path], tmp_path: Path) -> None:
    options, step_cols, sample_cols = CASES.get(name, ({}, set(), None))
    config = resolve_config(
        {
            "cache": str(caches[m]),
            "out": str(tmp_path / "run"),
            "epochs": 3,
            "batch_size": 12,
            "feature_dim": 16,
            "device": "cpu",
            "lr": 3e-3,
            "seed": 7,
            "sampler": name,
            "sampler_options": options,
        }  # fmt: skip
    )
    summary = train(config)
    assert summary["status"] == "complete"
    steps = pl.read_parquet(tmp_path / "run" / "steps.parquet")
    assert step_cols <= set(steps.columns)
    if name.startswith("dus"):
        # the trainer's per-step batch sizes are the ones the sampler planned
        assert (steps["batch_size"] == steps["batch_size_planned"]).all()
    if name in ("dus", "dus-ds"):
        # N_B = m x batch_size rows per step, split between the modalities (Eq. 4)
        assert (steps.group_by("step").agg(pl.col("batch_size").sum())["batch_size"] == 12 * m).all()
    if sample_cols is not None:
        samples = pl.read_parquet(tmp_path / "run" / "samples.parquet")
        assert sample_cols | {"epoch", "sample_id", "idx", "modality"} <= set(samples.columns)


def test_bss_measure_train_scores_in_train_mode_at_the_training_batch_size(
    caches: dict[int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``measure=train`` is the reference measurer's pass (train mode, training batch size); the
    validation and test passes stay in eval mode at the evaluation batch size."""
    import mmrebal.engine.trainer as trainer_module

    passes: list[tuple[int, bool]] = []
    real = trainer_module.score_split

    def spy(model, method, dataset, device, batch_size, **kwargs):
        result = real(model, method, dataset, device, batch_size, **kwargs)
        passes.append((batch_size, kwargs["train_mode"]))
        return result

    monkeypatch.setattr(trainer_module, "score_split", spy)
    config = resolve_config(
        {
            "cache": str(caches[2]),
            "out": str(tmp_path / "run"),
            "epochs": 1,
            "batch_size": 12,
            "eval_batch_size": 50,
            "feature_dim": 16,
            "device": "cpu",
            "sampler": "bss",
            "sampler_options": {"measure": "train", "t_grow": 1},
        }  # fmt: skip
    )
    assert train(config)["status"] == "complete"
    assert passes[0] == (12, True)  # the measurer's pass
    assert passes[1:] and all(size == 50 and not mode for size, mode in passes[1:])


def test_train_mode_scoring_uses_batch_statistics_and_restores_the_mode(caches: dict[int, Path]) -> None:
    from mmrebal.cache.dataset import CacheDataset
    from mmrebal.engine.build import build_components
    from mmrebal.evaluation.scoring import score_split

    dataset = CacheDataset(caches[2], "train")
    torch.manual_seed(0)
    config = resolve_config({"cache": str(caches[2]), "feature_dim": 16, "device": "cpu"})
    model, method = build_components(config, dataset.info, torch.device("cpu"))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in norms]
    model.eval()
    evaluated = score_split(model, method, dataset, torch.device("cpu"), 20)
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, norms, strict=True))
    trained = score_split(model, method, dataset, torch.device("cpu"), 20, train_mode=True)
    assert not model.training  # restored
    assert any(not torch.equal(b, m.running_mean) for b, m in zip(before, norms, strict=True))
    assert not np.allclose(evaluated.losses["fused"], trained.losses["fused"])
