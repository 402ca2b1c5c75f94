"""How training and scoring read batches: worker count, worker persistence, prefetch, pinning and
preload, and :func:`batch_loader`, the one loader over row lists both use.

Workers are reader threads of the main process where the cache allows it (``reader`` ``threads``,
the default: see ``mmrebal.data.prefetch``), else reader processes over shared-memory buffers
(``processes``, also what a filtered cache gets: ``mmrebal.data.ring``); JPEG arrays and pinned
batches under ``processes`` keep DataLoader worker processes.

CPU runs keep the loader in the main process (``workers`` 0: plan t+1 is drawn after the feedback
of step t, and the numbers of a run do not depend on the machine). CUDA runs read in worker
processes sized from the cores this process may use (shared by the local DDP ranks), keep them
alive across epochs, prefetch two batches per worker and copy from pinned memory. ``preload auto``
reads a split into memory when the three splits' arrays together fit in ``RAM_SHARE`` of the
memory the system reports available (each local rank holds its own copy).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from mmrebal.cache.dataset import CacheDataset, batch_collate
from mmrebal.cache.rows import cache_bytes
from mmrebal.data.prefetch import ThreadLoader
from mmrebal.data.ring import SharedRingLoader

MAX_AUTO_WORKERS = 8
RAM_SHARE = 0.5
PREFETCH = 2  # batches in flight per worker: PyTorch's default; plans run this far ahead of feedback


READERS = ("threads", "processes")
BatchLoader = DataLoader | ThreadLoader | SharedRingLoader  # what batch_loader returns: each iterates batches


@dataclass(frozen=True)
class LoaderSettings:
    """Loader options of one run (``workers == 0`` disables the others but pinning)."""

    workers: int
    pin_memory: bool
    persistent: bool
    prefetch: int | None
    threads: bool = True  # workers are reader threads where the cache allows it

    def dataloader_kwargs(self) -> dict[str, object]:
        kwargs: dict[str, object] = {"num_workers": self.workers, "pin_memory": self.pin_memory}
        if self.workers:
            kwargs.update(persistent_workers=self.persistent, prefetch_factor=self.prefetch)
        return kwargs


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def local_world_size() -> int:
    """Processes of this job on this machine (torchrun's ``LOCAL_WORLD_SIZE``), which share its cores."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def loader_settings(workers: int | None, device: torch.device, reader: str = "threads") -> LoaderSettings:
    """``workers`` None: 0 on CPU; on CUDA this rank's share of the cores less one for the main process."""
    cuda = device.type == "cuda"
    if workers is None:
        share = usable_cores() // local_world_size()
        workers = min(MAX_AUTO_WORKERS, max(1, share - 1)) if cuda else 0
    return LoaderSettings(
        workers,
        pin_memory=cuda,
        persistent=cuda and workers > 0,
        prefetch=PREFETCH,
        threads=reader == "threads",
    )


def available_memory() -> int:
    """Bytes the kernel reports available (``MemAvailable``), else the physical memory."""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def decide_preload(mode: str, cache: Path) -> bool:
    """``yes``/``no`` as given; ``auto``: whether the cache's arrays fit in ``RAM_SHARE`` of free memory."""
    if mode != "auto":
        return mode == "yes"
    return cache_bytes(cache) * local_world_size() <= RAM_SHARE * available_memory()


def batch_loader(
    dataset: CacheDataset,
    batches: Iterable[list[int]],
    device: torch.device,
    settings: LoaderSettings | None = None,
) -> BatchLoader:
    """A loader over row lists, one batch per row list: reader threads where the settings and the
    cache allow them, else reader processes over shared memory, else (JPEG arrays, pinned batches)
    a DataLoader over ``__getitems__`` (``settings.workers`` processes).

    ``settings`` default: the main process only (``loader_settings(0, device)``).
    """
    settings = settings or loader_settings(0, device)
    prefetch = settings.prefetch or 1
    if settings.workers and settings.threads and dataset.thread_safe:
        return ThreadLoader(dataset, batches, settings.workers, prefetch, settings.persistent, device)
    if settings.workers and not settings.pin_memory and all(dataset.row_layout(k) for k in dataset.keys):
        return SharedRingLoader(dataset, batches, settings.workers, prefetch, settings.persistent)
    return DataLoader(
        dataset, batch_sampler=batches, collate_fn=batch_collate, **settings.dataloader_kwargs()
    )
