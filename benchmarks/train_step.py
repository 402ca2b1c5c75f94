"""Step time of mmrebal's trainer beside bare PyTorch loops on the same model, batches and data.

The trainer side is ``Trainer.train_epoch`` with a train preset (``--preset``; uniform sampler,
joint method): plans, the loader over ``__getitems__``, the transfer and conversion on the device,
augmentation where the preset has it, ``method.train_step``, the feedback reduction, sampler feedback
and trace rows; its samples/s are end to end from the cache. Two bare loops are what a user would
write by hand: forward, CE(fused) + sum of unimodal CE, backward, step, with the same optimiser and
autocast:

- **bare, from the cache**: shuffle, read each batch with the same dataset call, convert it;
- **bare, on the device**: the same batches read and converted once before timing, already on the
  device, so the loop is the model alone (its physical limit on this device).

All start from the same weights and alternate epoch by epoch so machine load hits them alike. Goals:
trainer step time <= 1.05x the bare loop from the cache (``cpu`` preset on CPU), and trainer samples/s
>= 0.9x the bare loop on the device (``--preset ogm`` on a GPU).

    python benchmarks/train_step.py [--preset cpu] [--shapes avmnist] [--device auto] [--bf16]
        [--cache X.h5] [--train-samples 640] [--batch-size N] [--repeats 5] [--threads 2]

On a GPU: ``python benchmarks/train_step.py --preset ogm --shapes ogm --bf16``; a quick CPU check of
the same path: ``--preset ogm --shapes ogm --train-samples 16 --batch-size 8 --repeats 1``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from mmrebal.cache.dataset import CacheDataset
from mmrebal.cache.writer import Entry, SampleJournal, assemble
from mmrebal.data.device import device_batch
from mmrebal.engine.build import build_run
from mmrebal.engine.config import TRAIN_PRESETS, resolve_config
from mmrebal.engine.trainer import Trainer
from mmrebal.prep.presets import PRESETS

# The default avmnist cache's shapes (3 frames at 32x32, a 64-bin x 63-step log-mel spectrogram).
FRAMES_SHAPE = (3, 32, 32, 3)
SPEC_SHAPE = (64, 63)


def synthetic_cache(
    path: Path,
    train_samples: int,
    num_classes: int = 10,
    seed: int = 0,
    frames_shape: tuple[int, ...] = FRAMES_SHAPE,
    spec_shape: tuple[int, ...] = SPEC_SHAPE,
    frames: Callable[[np.random.Generator], np.ndarray] | None = None,
    compression: str | None = None,
) -> Path:
    """Random arrays (default: the avmnist shapes; read speed does not depend on the values); 16 val and
    16 test rows. ``frames`` draws each row's frames instead (content matters once ``compression`` is
    set: ``mmrebal.cache.writer.assemble``'s HDF5 filter)."""
    rng = np.random.default_rng(seed)
    key = f"bench-{train_samples}-{seed}-{frames_shape}-{spec_shape}-{frames is None}"
    journal = SampleJournal(path, hashlib.sha1(key.encode()).hexdigest())
    entries = []
    for i in range(train_samples + 32):
        split = "train" if i < train_samples else ("val" if i < train_samples + 16 else "test")
        journal.write(
            f"b{i}",
            {
                "audio/spec": rng.standard_normal(spec_shape).astype(np.float32),
                "visual/frames": frames(rng)
                if frames
                else rng.integers(0, 256, frames_shape, dtype=np.uint8),
            },
        )
        entries.append(Entry(f"b{i}", i % num_classes, split))
    kinds = {"audio": "spectrogram", "visual": "frames"}
    classes = [str(c) for c in range(num_classes)]
    assemble(journal, entries, path, classes, kinds, {"dataset": "bench"}, compression=compression)
    journal.remove()
    return path


def read_batches(dataset: CacheDataset, batch_size: int, seed: int, device: torch.device) -> Iterator[dict]:
    """One shuffled epoch of model-input batches on ``device``, read one by one with the trainer's call."""
    order = np.random.default_rng(seed).permutation(len(dataset))
    kinds = dataset.info.modalities
    for start in range(0, len(order), batch_size):
        yield device_batch(dataset.__getitems__(order[start : start + batch_size].tolist()), kinds, device)


def bare_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Any],
    autocast: Callable[[], AbstractContextManager],
) -> None:
    """The hand-written step: CE(fused) + sum of unimodal CE, backward, step."""
    with autocast():
        out = model(batch)
        labels = batch["label"]
        loss = F.cross_entropy(out.fused_logits.float(), labels)
        loss = loss + sum(F.cross_entropy(z.float(), labels) for z in out.unimodal_logits.values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def timed(device: torch.device, work: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``work`` takes until the device is done, and what it returns."""
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    synchronize()
    started = time.perf_counter()
    steps = work()
    synchronize()
    return time.perf_counter() - started, steps


def bare_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[dict[str, Any]],
    autocast: Callable[[], AbstractContextManager],
) -> int:
    """The hand-written loop over model-input batches; its step count."""
    model.train()
    steps = 0
    for batch in batches:
        bare_step(model, optimizer, batch, autocast)
        steps += 1
    return steps


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="cpu", choices=list(TRAIN_PRESETS), help="train preset")
    parser.add_argument("--shapes", default=None, help="prep preset whose shapes the synthetic cache has "
                        "(default: avmnist for the cpu preset, else ogm)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (trainer and bare loops)")
    parser.add_argument("--cache", type=Path, default=None, help="default: a synthetic cache of --shapes")
    parser.add_argument("--train-samples", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--preload", default="no", help="the trainer's --preload (no: time the read path)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    shapes = PRESETS.get(args.shapes or ("avmnist" if args.preset == "cpu" else "ogm"))
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or synthetic_cache(
            Path(tmp) / "bench.h5", args.train_samples, frames_shape=shapes.frames.shape(),
            spec_shape=shapes.audio.shape(),
        )  # fmt: skip
        options = {"cache": str(cache), "out": str(Path(tmp) / "run"), "preset": args.preset,
                   "device": args.device, "bf16": args.bf16, "preload": args.preload}  # fmt: skip
        if args.batch_size:
            options["batch_size"] = args.batch_size
        config = resolve_config(options)
        trainer = Trainer(build_run(config), console=Console(quiet=True))
        trainer.prepare_run_dir()
        device, autocast = trainer.device, trainer.autocast
        models = {name: copy.deepcopy(trainer.model) for name in ("cache", "device")}
        optimizers = {name: type(trainer.optimizer)(m.parameters(), **trainer.optimizer.defaults)
                      for name, m in models.items()}  # fmt: skip
        dataset = trainer.datasets["train"]
        resident = list(read_batches(dataset, config.batch_size, 0, device))  # the device loop's batches

        timings: dict[str, list[float]] = {"mmrebal": [], "cache": [], "device": []}
        rates = []
        for epoch in range(args.repeats + 1):  # epoch 0 warms up every side and is not counted
            before = trainer.state.global_step
            seconds, record = timed(device, functools.partial(trainer.train_epoch, epoch))
            steps = trainer.state.global_step - before
            sources = {"cache": read_batches(dataset, config.batch_size, epoch, device), "device": resident}
            bare = {
                name: timed(
                    device, functools.partial(bare_epoch, models[name], optimizers[name], batches, autocast)
                )
                for name, batches in sources.items()
            }
            if epoch:
                timings["mmrebal"].append(seconds / steps)
                for name, (took, count) in bare.items():
                    timings[name].append(took / count)
                rates.append(record.rate)

    ms = {name: statistics.median(values) * 1e3 for name, values in timings.items()}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    title = (f"train step, {args.preset} preset at {shapes.name} shapes, batch {config.batch_size}, "
             f"{where}{', bf16' if args.bf16 else ''}; load {os.getloadavg()[0]:.1f}")  # fmt: skip
    table = Table(title=title)
    for column in ("measure", "mmrebal trainer", "bare, from the cache", "bare, on the device",
                   "trainer / from cache", "trainer / on device"):  # fmt: skip
        table.add_column(column, justify="left" if column == "measure" else "right")
    step = [ms["mmrebal"], ms["cache"], ms["device"]]
    table.add_row("step time (median, ms)", *(f"{v:.1f}" for v in step),
                  f"{step[0] / step[1]:.3f}", f"{step[0] / step[2]:.3f}")  # fmt: skip
    rate = [
        statistics.median(rates),
        *(config.batch_size / v * 1e3 for v in step[1:]),
    ]  # trainer's: end to end
    table.add_row("samples/s (median)", *(f"{v:.0f}" for v in rate),
                  f"{rate[0] / rate[1]:.3f}", f"{rate[0] / rate[2]:.3f}")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
