"""JPEG frames and images in the cache: they round-trip within JPEG's loss, read through the same
batch path (worker processes, preload, decode where the batch lands) and train."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny_cache import build_tiny_cache
from rich.console import Console
from torch.utils.data import DataLoader

from mmrebal.cache.dataset import CacheDataset
from mmrebal.cache.format import read_info
from mmrebal.cache.jpeg import EncodedFrames
from mmrebal.cache.writer import Entry, SampleJournal, assemble
from mmrebal.data.device import device_batch
from mmrebal.data.loading import loader_settings
from mmrebal.engine.config import resolve_config
from mmrebal.engine.trainer import train
from mmrebal.evaluation.scoring import batch_loader

CPU = torch.device("cpu")
KINDS = {"visual": "frames", "image": "image", "audio": "spectrogram"}
TOLERANCE = 2.0  # mean absolute error in grey levels at quality 90 on smooth content


def smooth_sample(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Gradients with a little noise: content a camera gives, that JPEG keeps within a few levels."""
    y, x = np.mgrid[0:24, 0:32]
    base = 60 + 2 * x + 3 * y + rng.integers(0, 40)
    frames = np.stack([base + 5 * t + rng.normal(0, 1, base.shape) for t in range(3)])
    rgb = np.stack([frames, frames * 0.8, 255 - frames], axis=-1)
    return {
        "visual/frames": np.clip(rgb, 0, 255).astype(np.uint8),  # [3, 24, 32, 3]
        "image/pixels": np.clip(rgb[0], 0, 255).astype(np.uint8),
        "audio/spec": rng.standard_normal((7, 5)).astype(np.float32),
    }


def write(path: Path, compression: str | None) -> Path:
    rng = np.random.default_rng(0)
    journal = SampleJournal(path, "smooth")
    entries = []
    for i in range(10):
        journal.write(f"s{i}", smooth_sample(rng))
        entries.append(Entry(f"s{i}", i % 2, "test" if i == 9 else "train"))
    return assemble(journal, entries, path, ["a", "b"], KINDS, {}, compression=compression)


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("jpeg")
    return write(tmp / "raw.h5", None), write(tmp / "jpeg.h5", "jpeg")


def test_jpeg_round_trips_within_tolerance_through_the_batch_path(caches: tuple[Path, Path]) -> None:
    raw_path, jpeg_path = caches
    assert read_info(jpeg_path).shapes == read_info(raw_path).shapes  # decoded shapes, as raw
    raw, lazy = CacheDataset(raw_path, "train"), CacheDataset(jpeg_path, "train")
    eager = CacheDataset(jpeg_path, "train", preload=True)
    positions = [6, 0, 3, 3, 8, 0]  # unsorted, duplicates
    want = raw.__getitems__(positions)
    got = lazy.__getitems__(positions)
    assert isinstance(got["visual"], EncodedFrames) and isinstance(got["image"], EncodedFrames)
    assert got["visual"].data.numel() < want["visual"].numel() / 2  # what a worker ships
    assert not lazy.thread_safe  # h5py reads the byte strings: worker processes
    loader = batch_loader(lazy, [positions], CPU, loader_settings(1, CPU))
    assert isinstance(loader, DataLoader)
    for batch in (got, eager.__getitems__(positions), next(iter(loader))):
        decoded = device_batch(batch, lazy.info.modalities, CPU)
        expected = device_batch(want, raw.info.modalities, CPU)
        assert torch.equal(decoded["audio"], expected["audio"]) and decoded["idx"].tolist() == positions
        for key in ("visual", "image"):
            assert decoded[key].shape == expected[key].shape and decoded[key].dtype == torch.float32
            stored = batch[key].decode().int()
            assert stored.shape == want[key].shape
            assert (stored - want[key].int()).abs().float().mean() <= TOLERANCE, key
    assert torch.equal(lazy[3]["visual"], got["visual"].decode()[2])  # an item is the batch's row


def test_a_jpeg_cache_is_smaller_and_trains_one_epoch(caches: tuple[Path, Path], tmp_path: Path) -> None:
    raw_path, jpeg_path = caches
    assert jpeg_path.stat().st_size < raw_path.stat().st_size
    cache = build_tiny_cache(tmp_path / "tiny-jpeg.h5", n=30, modalities=("audio", "visual", "image"),
                             compression="jpeg")  # fmt: skip
    options = {"cache": str(cache), "out": str(tmp_path / "run"), "epochs": 1, "batch_size": 6,
               "feature_dim": 8, "device": "cpu", "preload": "no"}  # fmt: skip
    summary = train(resolve_config(options), console=Console(quiet=True))
    assert summary["status"] == "complete" and np.isfinite(summary["test"]["fused"]["loss"])
