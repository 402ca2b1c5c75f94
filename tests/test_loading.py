"""Loader settings from the device, ``--preload auto`` and the run's one persistent train loader."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from _tiny_cache import build_tiny_cache
from rich.console import Console

from mmrebal.cache.rows import cache_bytes
from mmrebal.data import loading
from mmrebal.data.prefetch import ThreadLoader
from mmrebal.data.ring import SharedRingLoader
from mmrebal.engine.build import build_run
from mmrebal.engine.config import ConfigError, TrainConfig, resolve_config
from mmrebal.engine.trainer import Trainer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cache(tmp_path_factory.mktemp("cache") / "tiny.h5", n=60, num_classes=3, seed=2)


def test_workers_come_from_the_device_and_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert loading.loader_settings(None, cpu) == loading.LoaderSettings(0, False, False, loading.PREFETCH)
    monkeypatch.setattr(loading, "usable_cores", lambda: 16)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    gpu = loading.loader_settings(None, cuda)
    assert (gpu.workers, gpu.pin_memory, gpu.persistent) == (8, True, True)  # capped at MAX_AUTO_WORKERS
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four ranks share the 16 cores: 4 each, one is the rank's
    assert loading.loader_settings(None, cuda).workers == 3
    monkeypatch.setattr(loading, "usable_cores", lambda: 2)
    assert loading.loader_settings(None, cuda).workers == 1  # never none on CUDA
    assert loading.loader_settings(0, cuda).dataloader_kwargs() == {"num_workers": 0, "pin_memory": True}
    assert loading.loader_settings(3, cpu).dataloader_kwargs() == {
        "num_workers": 3, "pin_memory": False, "persistent_workers": False, "prefetch_factor": 2}  # fmt: skip


def test_preload_auto_follows_the_free_memory(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with h5py.File(cache) as f:
        expected = sum(f[g][a].size * f[g][a].dtype.itemsize for g in ("audio", "visual") for a in f[g])
    assert cache_bytes(cache) == expected
    assert loading.decide_preload("yes", cache) and not loading.decide_preload("no", cache)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(loading, "available_memory", lambda: int(expected / loading.RAM_SHARE))
    assert loading.decide_preload("auto", cache)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # each local rank preloads its own copy
    assert not loading.decide_preload("auto", cache)
    assert loading.available_memory() > 0


def test_preload_and_workers_options() -> None:
    assert TrainConfig().preload == "auto" and TrainConfig().workers is None
    for preset in ("cpu", "ogm", "remix", "bss"):
        config = resolve_config({"preset": preset})
        assert (config.preload, config.workers) == ("auto", None)
    assert TrainConfig(preload=True).preload == "yes"  # an older config.yaml's boolean
    assert resolve_config({"preload": "false"}).preload == "no"
    with pytest.raises(ConfigError, match="preload='sometimes': choose one of auto, yes, no"):
        TrainConfig(preload="sometimes")
    with pytest.raises(ConfigError, match="workers=-1"):
        TrainConfig(workers=-1)
    assert resolve_config({"workers": "2"}).workers == 2


def _trained(cache: Path, out: Path, reader: str | None) -> tuple[float, list[torch.Tensor]]:
    options = {"cache": str(cache), "out": str(out), "epochs": 2, "batch_size": 12, "feature_dim": 8,
               "device": "cpu", "seed": 3, "preload": "no"}  # fmt: skip
    trainer = Trainer(build_run(resolve_config(options)), console=Console(quiet=True))
    if reader:  # what CUDA runs get, on CPU: workers kept alive across epochs
        threads = reader == "threads"
        trainer.loading = dataclasses.replace(trainer.loading, workers=2, persistent=True, threads=threads)
    trainer.prepare_run_dir()
    loaders = []
    for epoch in range(2):
        rate = trainer.train_epoch(epoch).rate
        loaders.append(trainer.train_loader)
    assert trainer.state.global_step == 2 * 3  # 36 train rows, batch 12, every epoch
    if reader == "processes":
        assert isinstance(loaders[0], SharedRingLoader) and loaders[0] is loaders[1]
        assert len(loaders[0].processes) == 2  # the same worker processes served both epochs
    if reader == "threads":
        assert isinstance(loaders[0], ThreadLoader) and loaders[0] is loaders[1]
        assert loaders[0]._pool is not None  # the same threads served both epochs
    return rate, [p.detach().clone() for p in trainer.model.parameters()]


def test_worker_loaders_train_exactly_like_the_main_process(cache: Path, tmp_path: Path) -> None:
    _, inline = _trained(cache, tmp_path / "inline", reader=None)
    for reader in ("processes", "threads"):
        rate, worker = _trained(cache, tmp_path / reader, reader=reader)
        assert all(torch.equal(a, b) for a, b in zip(inline, worker, strict=True)), reader
        assert np.isfinite(rate)
