"""Loader throughput: the training read path beside a raw per-row h5py read and the JPEG loader.

For each shape (the frames and spectrogram of the ``avmnist``, ``ogm``, ``ogm-3f`` and ``bss-ks``
prep presets) this writes a synthetic cache with the project's own writer (``train_step.
synthetic_cache``: journal + assembly) and times, on the same shuffled batches at the batch size of
the matching train preset (``cpu`` 64, ``ogm`` 64, ``bss`` 32):

- **mmrebal**: the loader the trainer builds (``mmrebal.data.loading.batch_loader`` with
  ``mmrebal.data.loading.loader_settings``, over ``CacheDataset.__getitems__``, not preloaded: the
  path of a split too large for ``--preload auto``), with 0, 1 and 2 workers, as reader threads
  (``--reader threads``, the default) and as reader processes over shared memory (``--reader
  processes``, ``mmrebal.data.ring``). What it
  delivers is what the trainer hands to ``device_batch``: stored uint8 frames, float32 spectrograms
  (the float conversion runs on the training device and is not part of the read path);
- **raw**: a plain per-row h5py loop over the same rows in one process (``np.stack`` of ``ds[row]``,
  datasets opened once), the speed of the file;
- **JPEG**: the reference repos' loader of ``benchmarks/prep.py`` (``stage2_item``: PIL-decode and
  resize the dumped JPEG frames, ``librosa.load`` + STFT the wav) over clips this script generates
  and dumps with ``stage1_dump``, in a DataLoader with the same number of workers.

Two rates per loader, both at the steady rate (``measure_rate``: worker start-up and the batches the
workers prefetched before the clock started are not counted): wall-clock
samples/s, and samples per CPU-second of every process that read them (the main one and its workers),
which is what one process achieves without the other tenants of a shared machine. Goals: mmrebal >=
0.9x raw per process, >= 20x the JPEG loader, and wall rate linear in workers where cores are free
("per worker vs 1": the rate over workers x the same reader's 1-worker rate; 1.00 is linear).

How linear N workers can be also depends on the machine: N copies from the page cache share its
memory bandwidth and caches, and on a machine with N cores the consumer shares them too. So the
same reads (``CacheDataset.__getitems__`` over the same batches) also run in N independent
processes with no loader and no consumer (:func:`independent_rate`): "machine per process vs 1" is
their aggregate rate over N x one such process's, the most any loader of N workers can scale here,
and "vs machine" is the loader's per-worker figure over it (1.00: the loader loses nothing to its
hand-off, its GIL or its consumer beyond what the machine itself loses).

A second table compares the cache layouts of ``mmrebal prep --compression`` (raw, lzf, JPEG frames)
at ``bss-ks`` shapes (frames cut from photographs so that a compressor has natural content): bytes
per sample on disk, batch read speed in one process, and the speed to model input on ``--device``
(``device_batch``: the transfer, the JPEG decode, float conversion and normalisation; on CUDA the
decode is nvJPEG's on the GPU). ``--device cuda`` also pins the main table's batches as training does.

Usage: ``python benchmarks/loader.py [--shapes avmnist,ogm,ogm-3f,bss-ks] [--rows 256] [--batches 96]``
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from prep import make_dataset, stage1_dump, stage2_item, table
from torch.utils.data import DataLoader, Dataset
from train_step import synthetic_cache

from mmrebal.cache.dataset import CacheDataset
from mmrebal.data import loading
from mmrebal.data.device import device_batch, resolve_device
from mmrebal.data.loading import batch_loader, loader_settings
from mmrebal.engine.config import resolve_config
from mmrebal.prep.presets import PRESETS, Preset

SHAPES = {"avmnist": "cpu", "ogm": "ogm", "ogm-3f": "ogm", "bss-ks": "bss"}  # prep preset -> train preset
READER_TIMEOUT_S = 300  # an independent reader that has not started or finished by then has failed


def shuffled_batches(n: int, batch_size: int, count: int, seed: int = 0) -> list[list[int]]:
    """``count`` batches of distinct positions, epoch after epoch of shuffles (as the uniform sampler)."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = []
    while len(out) < count:
        order = rng.permutation(n)
        out += [order[i : i + batch_size].tolist() for i in range(0, n - batch_size + 1, batch_size)]
    return out[:count]


@dataclass(frozen=True)
class Rate:
    wall: float  # samples/s
    cpu: float  # samples per CPU-second of every process that read them (the main one and its workers)


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of this process and of the live processes ``pids`` (DataLoader workers), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = time.process_time()
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def untimed(workers: int) -> int:
    """Batches ``measure_rate`` lets pass before its clock starts: the first one and what the workers
    prefetched while it was made, so that every timed batch is made at the steady rate."""
    return 1 + workers * loading.PREFETCH


def measure_rate(batches: Iterable[dict[str, Any]], count: int, workers: int = 0) -> Rate:
    """Throughput over the batches after the first :func:`untimed` ones (worker start-up and the
    prefetch made while the clock was not running are not counted)."""
    it = iter(batches)
    warm = min(untimed(workers), count - 2)
    for _ in range(warm):
        next(it)
    workers_of = getattr(it, "_workers", None) or getattr(batches, "processes", [])  # DataLoader / ring
    pids = [w.pid for w in workers_of]
    started, cpu_started, samples = time.perf_counter(), cpu_seconds(pids), 0
    for _ in range(count - warm):
        samples += len(next(iter(next(it).values())))
    wall = samples / (time.perf_counter() - started)
    rate = Rate(wall, samples / max(cpu_seconds(pids) - cpu_started, 1e-9))
    for _ in it:  # nothing is left; lets the loader stop its workers
        pass
    return rate


def _read_share(path: Path, batches: list[list[int]], start: Any, done: Any) -> None:
    """One independent reader: the training read of its share of the batches, timed from ``start``;
    a failure breaks the barrier and answers None, so the parent stops at once."""
    try:
        dataset = CacheDataset(path, "train", preload=False)
        for rows in batches[:3]:  # open the file, fault in the mapping and the buffer pool
            dataset.__getitems__(rows)
        start.wait()
        for rows in batches:
            dataset.__getitems__(rows)
    except BaseException:
        start.abort()
        done.put(None)
        raise
    done.put(sum(len(rows) for rows in batches))


def independent_rate(path: Path, batches: list[list[int]], processes: int) -> float:
    """Samples/s of ``processes`` processes each reading every ``processes``-th batch at once, with
    no loader and no consumer: what this machine gives the same reads in parallel. Their batches are
    never pinned (a forked process must not touch CUDA), so under ``--device cuda`` the ceiling
    leaves out the pinned allocation the loader's own threads make."""
    context = torch.multiprocessing.get_context("fork")
    start, done = context.Barrier(processes + 1), context.Queue()
    readers = [
        context.Process(target=_read_share, args=(path, batches[i::processes], start, done), daemon=True)
        for i in range(processes)
    ]
    for reader in readers:
        reader.start()
    try:
        start.wait(timeout=READER_TIMEOUT_S)
        began = time.perf_counter()
        counts = [done.get(timeout=READER_TIMEOUT_S) for _ in readers]
    except (threading.BrokenBarrierError, queue.Empty):
        counts = [None]
    if None in counts:
        raise SystemExit(f"independent readers of {path.name} failed (see their traceback above)")
    samples = sum(counts)
    elapsed = time.perf_counter() - began
    for reader in readers:
        reader.join()
    return samples / elapsed


def raw_rows(path: Path, rows: np.ndarray, batches: list[list[int]]) -> Iterator[dict[str, np.ndarray]]:
    """The file's speed: a plain per-row h5py read of the same rows, datasets opened once."""
    with h5py.File(path, "r") as f:
        arrays = {key: f[key] for key in ("visual/frames", "audio/spec")}
        for batch in batches:
            yield {key: np.stack([ds[int(r)] for r in rows[batch]]) for key, ds in arrays.items()}


class JpegItems(Dataset):
    """The reference loader: one ``stage2_item`` per sample, as float tensors (its collate stacks)."""

    def __init__(self, folders: list[Path], preset: Preset) -> None:
        self.folders = folders
        self.preset = preset

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        frames, spec = stage2_item(self.folders[i % len(self.folders)], self.preset)
        return {
            "visual": torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0),
            "audio": torch.from_numpy(spec).unsqueeze(0),
        }


def jpeg_dump(root: Path, preset: Preset, clips: int, workers: int) -> list[Path]:
    """Clips of the preset's duration, dumped to JPEG frames + wav the reference way (stage 1)."""
    paths = make_dataset(root / "src", clips, preset.audio.duration_s, workers)
    fps = preset.frames.fps or 1.0
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(stage1_dump, [(p, root / "dump" / p.stem, fps) for p in paths]))
    return [root / "dump" / p.stem for p in paths]


def measure(name: str, args: argparse.Namespace, tmp: Path) -> list[tuple[str, ...]]:
    preset = PRESETS.get(name)
    config = resolve_config({"preset": SHAPES[name], "device": "cpu"})
    bs = config.batch_size
    cache = synthetic_cache(
        tmp / f"{name}.h5",
        args.rows,
        frames_shape=preset.frames.shape(),
        spec_shape=preset.audio.shape(),
    )
    folders = jpeg_dump(tmp / f"{name}-jpeg", preset, args.clips, max(1, *args.workers))
    dataset = CacheDataset(cache, "train", preload=False, pin_memory=args.device.type == "cuda")
    warm = untimed(max(args.workers))
    batches = shuffled_batches(len(dataset), bs, args.batches + warm)
    jpeg_batches = batches[: args.jpeg_batches + warm]  # item i is clip i % clips
    raw = measure_rate(raw_rows(cache, dataset.rows, batches), len(batches))
    print(f"{name}: raw per-row h5py {raw.wall:.0f} samples/s", file=sys.stderr)
    rows, base, device = [], None, args.device
    one_worker: dict[str, float] = {}  # reader -> its 1-worker rate, for the linear-in-workers column
    alone = {w: independent_rate(cache, batches, w) for w in sorted({1, *args.workers} - {0})}
    machine = {w: alone[w] / (w * alone[1]) for w in alone}  # the machine's own per-process scaling
    print(f"{name}: the same reads in independent processes {alone}", file=sys.stderr)
    for workers in args.workers:
        reference = JpegItems(folders, preset)
        prefetch = loading.PREFETCH if workers else None
        jpeg_loader = DataLoader(
            reference, batch_sampler=jpeg_batches, num_workers=workers, prefetch_factor=prefetch
        )
        jpeg = measure_rate(jpeg_loader, len(jpeg_batches), workers)
        for reader in ("threads", "processes") if workers else ("main",):
            settings = loader_settings(workers, device, reader)
            ours = measure_rate(batch_loader(dataset, batches, device, settings), len(batches), workers)
            base = base or ours.wall
            if workers == 1:
                one_worker[reader] = ours.wall
            print(
                f"{name}: {workers} {reader}: mmrebal {ours.wall:.0f}, JPEG {jpeg.wall:.1f} /s",
                file=sys.stderr,
            )
            linear = ours.wall / (workers * one_worker[reader]) if reader in one_worker else None
            scaling = (linear, machine.get(workers))
            rows.append(reader_row(name, bs, workers, reader, ours, raw, jpeg, base, scaling))
    return rows


def reader_row(
    name: str,
    bs: int,
    workers: int,
    reader: str,
    ours: Rate,
    raw: Rate,
    jpeg: Rate,
    base: float,
    scaling: tuple[float | None, float | None],
) -> tuple[str, ...]:
    """One line of the loader table; ``scaling``: the rate per worker over the same reader's 1-worker
    rate, and the machine's own per-process scaling of the same reads (None: the main process reads)."""
    linear, machine = scaling
    return (
        name,
        str(bs),
        f"{workers} {reader}",
        f"{ours.wall:.0f}",
        f"{raw.wall:.0f}",
        f"{jpeg.wall:.1f}",
        f"{ours.wall / base:.2f}",
        "-" if linear is None else f"{linear:.2f}",
        "-" if linear is None or machine is None else f"{machine:.2f}",
        "-" if linear is None or machine is None else f"{linear / machine:.2f}",
        f"{ours.wall / jpeg.wall:.0f}x",
        f"{ours.cpu:.0f}",
        f"{raw.cpu:.0f}",
        f"{ours.cpu / raw.cpu:.2f}",
        f"{ours.cpu / jpeg.cpu:.0f}x",
    )


def natural_frames(shape: tuple[int, ...]) -> Callable[[np.random.Generator], np.ndarray]:
    """Frames cut from scikit-learn's two bundled photographs, panning a few pixels per frame, so a
    compressor sees natural content (random pixels would not compress at all)."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # 427x640 RGB
    count, height, width, _ = shape

    def draw(rng: np.random.Generator) -> np.ndarray:
        photo = photos[rng.integers(len(photos))]
        y = int(rng.integers(0, photo.shape[0] - height - 2 * count))
        x = int(rng.integers(0, photo.shape[1] - width - 4 * count))
        return np.stack(
            [photo[y + 2 * t : y + 2 * t + height, x + 4 * t : x + 4 * t + width] for t in range(count)]
        )

    return draw


def on_device(batch: dict[str, Any], kinds: dict[str, str], device: torch.device) -> dict[str, Any]:
    """The trainer's ``device_batch``, finished (a CUDA copy or decode is asynchronous)."""
    out = device_batch(batch, kinds, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out


def frames_bytes(path: Path) -> float:
    """Stored bytes of one sample's frames: the JPEG strings' lengths, else the array's storage."""
    with h5py.File(path, "r") as f:
        ds = f["visual/frames"]
        if ds.dtype.kind == "O":
            return sum(len(b) for row in ds for b in row) / len(ds)
        return ds.id.get_storage_size() / len(ds)


def measure_layouts(args: argparse.Namespace, tmp: Path) -> list[tuple[str, ...]]:
    """Size and read speed of the cache layouts (``prep --compression``) at Kinetics-Sounds shapes."""
    preset = PRESETS.get("bss-ks")
    bs = resolve_config({"preset": SHAPES["bss-ks"], "device": "cpu"}).batch_size
    out, base = [], None
    for compression in ("none", "lzf", "jpeg"):
        path = synthetic_cache(
            tmp / f"layout-{compression}.h5",
            args.rows,
            frames_shape=preset.frames.shape(),
            spec_shape=preset.audio.shape(),
            frames=natural_frames(preset.frames.shape()),
            compression=None if compression == "none" else compression,
        )
        device = args.device
        dataset = CacheDataset(path, "train", preload=False, pin_memory=device.type == "cuda")
        batches = shuffled_batches(len(dataset), bs, args.batches + 1)
        ours = measure_rate(batch_loader(dataset, batches, device, loader_settings(0, device)), len(batches))
        inputs = (
            on_device(b, dataset.info.modalities, device)
            for b in batch_loader(dataset, batches, device, loader_settings(0, device))
        )
        converted = measure_rate(inputs, len(batches))
        raw = measure_rate(raw_rows(path, dataset.rows, batches), len(batches))
        size = path.stat().st_size / (args.rows + 32)
        base = base or (size, ours.wall, converted.wall)
        frames = frames_bytes(path)
        out.append((compression, f"{size / 1e3:.0f}", f"{frames / 1e3:.0f}", f"{base[0] / size:.2f}x",
                    f"{ours.wall:.0f}", f"{raw.wall:.0f}", f"{ours.wall / base[1]:.2f}",
                    f"{converted.wall:.0f}", f"{converted.wall / base[2]:.2f}"))  # fmt: skip
        print(f"layout {compression}: {size / 1e3:.0f} KB/sample, {ours.wall:.0f} samples/s", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help="prep presets whose shapes to time")
    parser.add_argument("--rows", type=int, default=256, help="train rows of each synthetic cache")
    parser.add_argument("--batches", type=int, default=96, help="timed batches per setting (24 is noisy)")
    parser.add_argument("--clips", type=int, default=16, help="generated clips behind the JPEG loader")
    parser.add_argument("--jpeg-batches", type=int, default=8, help="timed JPEG-loader batches")
    parser.add_argument("--workers", default="0,1,2", help="DataLoader worker counts")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto: where batches are pinned for "
                        "and the layouts' batches are converted (and JPEG decoded)")  # fmt: skip
    parser.add_argument("--no-layouts", action="store_true", help="skip the raw / lzf / jpeg layout table")
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",")]
    args.device = resolve_device(args.device)
    names = args.shapes.split(",")
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise SystemExit(f"--shapes: unknown {', '.join(unknown)}; choose from {', '.join(SHAPES)}")
    rows: list[tuple[str, ...]] = []
    layouts: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="mmrebal-loader-") as tmp:
        for name in names:
            rows += measure(name, args, Path(tmp))
        if not args.no_layouts:
            layouts = measure_layouts(args, Path(tmp))
    header = ("shape", "batch", "workers", "mmrebal /s", "raw h5py /s", "JPEG /s", "vs 0 workers",
              "per worker vs 1", "machine per process vs 1", "vs machine", "/ JPEG", "mmrebal /CPU-s",
              "raw /CPU-s", "/ raw per CPU", "/ JPEG per CPU")  # fmt: skip
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{loading.usable_cores()} cores, load average {load} (other processes share them)\n")
    table(header, rows)
    if layouts:
        print(f"\nlayouts at bss-ks shapes, frames from photographs, 0 workers, on {args.device}:\n")
        table(("layout", "KB/sample", "frames KB/sample", "smaller", "mmrebal /s", "raw h5py /s",
               "read speed vs none", "to model input /s", "vs none"), layouts)  # fmt: skip


if __name__ == "__main__":
    main()
