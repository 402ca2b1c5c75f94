"""Config -> the parts of a run: device and process group, datasets, model, method, sampler, optimiser,
schedule, augmentation. The :class:`~mmrebal.engine.trainer.Trainer` receives them built, so a run
assembled by hand (a benchmark, a notebook) trains on the same code path as ``mmrebal train``.

The order below is part of the numbers: the global seed is set before the model is initialised
(its weights are the first draws), and everything after draws from its own seeded generator.
Optimisers and schedules are registries like samplers; their names are what ``--optimizer`` and
``--scheduler`` accept (scanned by :mod:`mmrebal.names` before torch loads).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmrebal.cache.dataset import CacheDataset
from mmrebal.cache.format import CacheInfo, read_info
from mmrebal.data.device import autocast_factory, resolve_device
from mmrebal.data.loading import LoaderSettings, decide_preload, loader_settings
from mmrebal.engine import distributed
from mmrebal.engine.augment import TrainAugment, build_augment
from mmrebal.engine.config import ConfigError, TrainConfig
from mmrebal.engine.distributed import DistContext
from mmrebal.methods import Method
from mmrebal.registry import Registry
from mmrebal.samplers import Sampler, create_sampler

Params = Iterable[Any]
OPTIMIZERS: Registry[Callable[[Params, TrainConfig], torch.optim.Optimizer]] = Registry("optimizer")
SCHEDULERS: Registry[Callable[[torch.optim.Optimizer, TrainConfig], Any]] = Registry("scheduler")


@OPTIMIZERS.register("sgd")
def sgd(params: Params, c: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)


@OPTIMIZERS.register("adam")
def adam(params: Params, c: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(params: Params, c: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)


@SCHEDULERS.register("step")
def step_lr(optimizer: torch.optim.Optimizer, c: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.StepLR(optimizer, c.step_size, c.gamma)


@SCHEDULERS.register("none")
def constant(optimizer: torch.optim.Optimizer, c: TrainConfig) -> None:
    return None


def build_scheduler(optimizer: torch.optim.Optimizer, c: TrainConfig) -> Any:
    """The config's LR schedule for ``optimizer`` (None: a constant LR); also what a resumed run with
    a new ``--lr``/``--scheduler`` restarts from."""
    return SCHEDULERS.get(c.scheduler)(optimizer, c)


def build_components(
    config: TrainConfig, info: CacheInfo, device: torch.device
) -> tuple[torch.nn.Module, Method]:
    """The model (on ``device``) and the method a config describes, for a cache's modalities and shapes."""
    from mmrebal.methods import create_method  # looked up per call: a test may wrap it
    from mmrebal.models import build_model

    modalities = list(info.modalities)
    model = build_model(
        info.modalities,
        info.shapes,
        info.num_classes,
        config.encoder_map(modalities),
        fusion=config.fusion,
        feature_dim=config.feature_dim,
        **config.model_options,
    )
    return model.to(device), create_method(config.method, modalities, **config.method_options)


def run_warnings(sampler: Sampler, method: Method, config: TrainConfig) -> list[str]:
    """The sampler's and method's lines on this run's schedule, and on their pairing: rows that a
    sampler gives one modality alone feed only unimodal losses, which fused-only methods weigh 0; and
    a sampler that sets every loss weight (Remix) overrules the method's choice of unimodal losses."""
    lines = sampler.config_warnings() + method.config_warnings(config.epochs, config.optimizer)
    sets = sampler.sets_unimodal_weights()
    if method.honours_loss_weights and sets is not None and sets != method.trains_unimodal_rows():
        lines.append(
            f"{sampler.name} under {method.name}: {sampler.name} sets every loss weight of each step, so "
            f"{method.name}'s own weights do not act and the unimodal losses "
            + ("train: the run is not fused-only" if sets else "do not train: the run is fused-only")
        )
    if sampler.unpaired_rows and not method.trains_unimodal_rows():
        lines.append(
            f"{sampler.name} under {method.name}: the rows {sampler.name} gives a modality beyond the paired "
            f"ones feed only unimodal losses, which {method.name} weighs 0, so the sampler only shrinks the "
            "fused batch; train a unimodal loss (--method joint, the DUS paper's Baseline; for ogm-ge "
            "--method-opt unimodal_weight=1)"
        )
    return lines


def default_run_dir(config: TrainConfig, info: CacheInfo) -> Path:
    dataset = info.attrs.get("dataset") or info.path.stem
    return Path("runs") / f"{dataset}-{config.sampler}-{config.method}-s{config.seed}"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class RunParts:
    """Everything a run trains with, built from its config (see :func:`build_run`)."""

    config: TrainConfig
    dist: DistContext
    device: torch.device
    info: CacheInfo
    datasets: dict[str, CacheDataset]
    run_dir: Path
    model: torch.nn.Module  # the bare model: checkpoints, scoring, the method's predict
    train_model: torch.nn.Module  # what the step trains: the model in its DDP wrapper when there is one
    method: Method
    sampler: Sampler
    optimizer: torch.optim.Optimizer
    scheduler: Any  # an LRScheduler or None
    loading: LoaderSettings
    autocast: Callable[[], Any]
    augment: TrainAugment | None

    @property
    def modalities(self) -> list[str]:
        return list(self.info.modalities)


def build_datasets(cache: Path, preload: bool, pin_memory: bool = False) -> dict[str, CacheDataset]:
    datasets = {
        split: CacheDataset(cache, split, preload=preload, pin_memory=pin_memory)
        for split in ("train", "val", "test")
    }
    for split, ds in datasets.items():
        if len(ds) == 0:
            raise ValueError(f"{cache}: the {split} split is empty; rebuild the cache with a {split} split")
    return datasets


def build_run(config: TrainConfig, default_cache: Callable[[], Path] | None = None) -> RunParts:
    """Join the process group (under ``torchrun``), seed, open the cache and build every part.

    Without ``config.cache``, ``default_cache()`` gives it (the CLI's: the embedded avmnist cache,
    built on first use); rank 0 calls it first and the others after, so they find what it built.
    The config is kept with the cache resolved (what ``config.yaml`` records).
    """
    dist = distributed.from_environment()
    device = resolve_device(config.device, dist.local_rank)
    distributed.init_process_group(dist, device)
    seed_everything(config.seed)
    if not config.cache:
        if default_cache is None:
            raise ConfigError("no cache given: pass --cache (`mmrebal train` builds the default one)")
        if dist.is_main:
            config = dataclasses.replace(config, cache=str(default_cache()))
        distributed.barrier(dist)
        if not dist.is_main:
            config = dataclasses.replace(config, cache=str(default_cache()))
    cache = Path(config.cache)
    config = dataclasses.replace(config, cache=str(cache))  # recorded as resolved
    info = read_info(cache)
    loading = loader_settings(config.workers, device, config.reader)
    datasets = build_datasets(cache, decide_preload(config.preload, cache), loading.pin_memory)
    model, method = build_components(config, info, device)
    train_model = distributed.wrap_model(model, dist, device)
    train = datasets["train"]
    sampler = create_sampler(
        config.sampler,
        config.sampler_options,
        num_samples=len(train),
        labels=train.labels,
        modalities=tuple(info.modalities),
        batch_size=config.batch_size,
        epochs=config.epochs,
        seed=config.seed,
    )
    optimizer = OPTIMIZERS.get(config.optimizer)(model.param_groups(config.lr), config)
    augment = None
    if config.augment:
        augment = build_augment(info.modalities, config.seed, dist.rank, config.augment_options)
    return RunParts(
        config=config,
        dist=dist,
        device=device,
        info=info,
        datasets=datasets,
        run_dir=Path(config.out) if config.out else default_run_dir(config, info),
        model=model,
        train_model=train_model,
        method=method,
        sampler=sampler,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, config),
        loading=loading,
        autocast=autocast_factory(device, config.bf16),
        augment=augment,
    )
