"""Step time of mmrebal's trainer beside a bare PyTorch loop on the same model, batches and data.

The trainer side is ``Trainer.train_epoch`` with the ``cpu`` preset (uniform sampler, joint method):
plans, the DataLoader over ``__getitems__``, ``method.train_step``, the feedback reduction, sampler
feedback and trace rows. The bare side is what a user would write by hand: shuffle, read the batch
with the same dataset call, forward, CE(fused) + sum of unimodal CE, backward, step. Both start from
the same weights and alternate epoch by epoch so machine load hits them alike; the ratio is the
median trainer step time over the median bare step time (goal <= 1.05).

    python benchmarks/train_step.py [--cache X.h5] [--train-samples 640] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from mmrebal.cache.dataset import CacheDataset, model_inputs
from mmrebal.cache.writer import Entry, SampleJournal, assemble
from mmrebal.engine.build import build_run
from mmrebal.engine.config import resolve_config
from mmrebal.engine.trainer import Trainer

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


def bare_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    dataset: CacheDataset,
    batch_size: int,
    seed: int,
) -> int:
    """The hand-written loop; returns its number of steps."""
    model.train()
    order = np.random.default_rng(seed).permutation(len(dataset))
    kinds = dataset.info.modalities
    steps = 0
    for start in range(0, len(order), batch_size):
        batch = model_inputs(dataset.__getitems__(order[start : start + batch_size].tolist()), kinds)
        out = model(batch)
        labels = batch["label"]
        loss = F.cross_entropy(out.fused_logits, labels)
        loss = loss + sum(F.cross_entropy(z, labels) for z in out.unimodal_logits.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=None, help="default: synthetic, avmnist shapes")
    parser.add_argument("--train-samples", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or synthetic_cache(Path(tmp) / "bench.h5", args.train_samples)
        run_dir = str(Path(tmp) / "run")
        config = resolve_config({"cache": str(cache), "out": run_dir, "preset": "cpu", "device": "cpu"})
        trainer = Trainer(build_run(config), console=Console(quiet=True))
        trainer.prepare_run_dir()
        bare_model = copy.deepcopy(trainer.model)
        bare_optimizer = torch.optim.Adam(bare_model.parameters(), lr=config.lr)
        dataset = trainer.datasets["train"]

        timings: dict[str, list[float]] = {"mmrebal": [], "bare": []}
        rates = []
        for epoch in range(args.repeats + 1):  # epoch 0 warms up both sides and is not counted
            before = trainer.state.global_step
            started = time.perf_counter()
            rate = trainer.train_epoch(epoch).rate
            trainer_time = time.perf_counter() - started
            steps = trainer.state.global_step - before
            started = time.perf_counter()
            bare_steps = bare_epoch(bare_model, bare_optimizer, dataset, config.batch_size, seed=epoch)
            bare_time = time.perf_counter() - started
            if epoch:
                timings["mmrebal"].append(trainer_time / steps)
                timings["bare"].append(bare_time / bare_steps)
                rates.append(rate)

    trainer_ms = statistics.median(timings["mmrebal"]) * 1e3
    bare_ms = statistics.median(timings["bare"]) * 1e3
    table = Table(title=f"train step, cpu preset, batch {config.batch_size}, {args.threads} threads")
    for column in ("measure", "mmrebal trainer", "bare PyTorch", "ratio"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    ratio = trainer_ms / bare_ms
    table.add_row("step time (median, ms)", f"{trainer_ms:.1f}", f"{bare_ms:.1f}", f"{ratio:.3f}")
    bare_rate = config.batch_size / bare_ms * 1e3
    table.add_row("samples/s (median)", f"{statistics.median(rates):.0f}", f"{bare_rate:.0f}", "")
    Console().print(table)


if __name__ == "__main__":
    main()
