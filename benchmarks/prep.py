"""Prep throughput: ``mmrebal prep`` against the reference repos' two-stage JPEG pipeline.

The reference research code prepares audio-visual data in two stages: (1) dump frames of every clip
to JPEG files (at 1 fps) and its audio to a wav; (2) at training time, per item, PIL-decode the
JPEGs and ``librosa.load`` + STFT the wav. mmrebal decodes each clip once (decord frames at sorted
indices, PyAV audio track) straight into the HDF5 cache, then reads arrays back.

This script writes its own Kinetics-Sounds-like clips (PyAV: H.264 + AAC), then times on the same
clips and the same number of worker processes:

- ``run_prep("kinetics-sounds", ...)`` end to end (scan, parallel decode, journal, HDF5 assembly),
  and the same decode functions alone (the cost of writing the cache is the difference);
- stage 1 + stage 2 of the reference pipeline (stage 2 uses the same feature code, so the
  difference is the pipeline, not the STFT);
- random-order reads of single samples: ``CacheDataset`` vs the JPEG loader (one process each);
- per worker: ``run_prep`` with one worker against the decode floor (in one process: decord opens
  the clip and seeks the preset's frames, unresized, plus one STFT of a ready waveform; goal >= 0.8x),
  and against that floor plus what it leaves out but any prep of the clip must do (decode the audio
  track and resample it). All are wall-clock times over all clips, each in a fresh process after an
  untimed warm-up run, taken in alternating rounds (``--rounds``) so that a noisy neighbour, the disk
  or a CPU clock change hits both, and the table gives the median round; then a profile of one
  worker's decode stage by stage (CPU ms per clip, imports warmed up first).

Usage: ``python benchmarks/prep.py [--clips 100] [--workers 2] [--seconds 10] [--preset bss-ks] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from mmrebal.prep.presets import PRESETS, Preset

CLIP_SIZE = (240, 320)  # H, W of the generated clips (Kinetics is ~ 256x340)
CLIP_FPS = 10
CLIP_RATE = 16000
LABELS = ("playing drums", "singing", "tapping pen", "laughing")  # Kinetics-Sounds classes


def write_one(args: tuple[Path, int, float]) -> None:
    """A moving gradient with a chirp: cheap to make, not trivially compressible."""
    from mmrebal.media.video import write_clip

    path, seed, seconds = args
    rng = np.random.default_rng(seed)
    count = round(seconds * CLIP_FPS)
    height, width = CLIP_SIZE
    base = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    frames = np.stack([np.roll(base, 4 * t, axis=1) for t in range(count)])
    t = np.arange(round(seconds * CLIP_RATE)) / CLIP_RATE
    audio = 0.3 * np.sin(
        2 * np.pi * (200 + 50 * seed % 7) * t * (1 + t / seconds)
    ) + 0.02 * rng.standard_normal(len(t))
    write_clip(path, frames, CLIP_FPS, audio.astype(np.float32), CLIP_RATE)


def make_dataset(root: Path, clips: int, seconds: float, workers: int) -> list[Path]:
    folder = root / "clips"
    folder.mkdir(parents=True)
    end = round(seconds)  # Kinetics names: <youtube_id>_<time_start:06d>_<time_end:06d>.mp4
    paths = [folder / f"clip{n:07d}_000000_{end:06d}.mp4" for n in range(clips)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(write_one, [(p, n, seconds) for n, p in enumerate(paths)]))
    rows = ["label,youtube_id,time_start,time_end,split"]  # a Kinetics annotation CSV
    rows += [
        f"{LABELS[n % len(LABELS)]},clip{n:07d},0,{end},{'test' if n % 5 == 0 else 'train'}"
        for n in range(clips)
    ]
    (root / "annotations.csv").write_text("\n".join(rows) + "\n")
    return paths


# --- the reference two-stage pipeline ----------------------------------------------------------


def stage1_dump(args: tuple[Path, Path, float]) -> None:
    """Frames at ``fps`` to JPEG (what ``ffmpeg -r 1 %05d.jpg`` does) and the audio track to a wav."""
    import av
    import soundfile
    from PIL import Image

    clip, out, fps = args
    out.mkdir(parents=True)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        next_time, saved = 0.0, 0
        for frame in container.decode(stream):
            if frame.time is not None and frame.time + 1e-6 >= next_time:
                Image.fromarray(frame.to_ndarray(format="rgb24")).save(
                    out / f"{saved + 1:05d}.jpg", quality=95
                )
                saved += 1
                next_time = saved / fps
    with av.open(str(clip)) as container:
        stream = container.streams.audio[0]
        stream.codec_context.thread_count = 1
        wave = np.concatenate([f.to_ndarray().mean(axis=0) for f in container.decode(stream)])
        soundfile.write(out / "audio.wav", wave.astype(np.float32), stream.codec_context.sample_rate)


def stage2_item(folder: Path, preset: Preset) -> tuple[np.ndarray, np.ndarray]:
    """One training item the reference way: PIL-decode chosen JPEGs, librosa.load the wav, STFT."""
    import librosa
    from PIL import Image

    from mmrebal.media.features import audio_features

    jpegs = sorted(folder.glob("*.jpg"))
    picks = ((np.arange(preset.frames.num_frames) + 0.5) * len(jpegs) / preset.frames.num_frames).astype(int)
    height, width = preset.frames.size
    frames = np.stack(
        [
            np.asarray(Image.open(jpegs[i]).convert("RGB").resize((width, height), Image.BILINEAR))
            for i in picks
        ]
    )
    wave, _ = librosa.load(folder / "audio.wav", sr=preset.audio.sample_rate)
    return frames, audio_features(wave, preset.audio)


def _stage2_job(args: tuple[Path, str]) -> None:
    stage2_item(args[0], PRESETS.get(args[1]))


# --- timing ------------------------------------------------------------------------------------


def time_mmrebal(root: Path, out: Path, preset: str, workers: int) -> float:
    from mmrebal.prep.runner import run_prep

    started = time.perf_counter()
    report = run_prep("kinetics-sounds", root, out, preset=preset, workers=workers)
    if report.issues:
        raise SystemExit(f"mmrebal prep reported problems: {report.issues[0].line()}")
    return time.perf_counter() - started


def _decode_job(args: tuple[object, object, str]) -> None:
    adapter, item, preset = args
    adapter.decode(item, PRESETS.get(preset))


def time_decode_only(root: Path, preset: str, workers: int) -> float:
    """The decode functions alone (adapter.decode in a spawn pool, arrays dropped): prep minus writing."""
    from mmrebal.prep.adapters import ADAPTERS

    adapter = ADAPTERS.get("kinetics-sounds")()
    started = time.perf_counter()
    items, _ = adapter.scan(root)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_decode_job, [(adapter, item, preset) for item in items], chunksize=4))
    return time.perf_counter() - started


def time_reference(clips: list[Path], dump: Path, preset: Preset, workers: int) -> tuple[float, float]:
    """Both stages in fresh ``spawn`` pools, as ``run_prep`` uses, so both pay the same start-up."""
    fps = preset.frames.fps or 1.0
    spawn = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        list(pool.map(stage1_dump, [(c, dump / c.stem, fps) for c in clips]))
    stage1 = time.perf_counter() - started
    started = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        list(pool.map(_stage2_job, [(dump / c.stem, preset.name) for c in clips], chunksize=4))
    return stage1, time.perf_counter() - started


def floor_clip(clip: Path, preset: Preset, wave: np.ndarray) -> None:
    """The decode floor of one clip: open it, seek the preset's frames (no resize), one STFT."""
    from decord import VideoReader, cpu

    from mmrebal.media.features import audio_features

    reader = VideoReader(str(clip), ctx=cpu(0), num_threads=1)
    for i in np.linspace(0, len(reader) - 1, preset.frames.num_frames).astype(int):
        reader[int(i)].asnumpy()
    audio_features(wave, preset.audio)


def floor_audio_clip(clip: Path, preset: Preset, wave: np.ndarray) -> None:
    """The floor plus what it leaves out: decoding the clip's audio track and resampling it."""
    from mmrebal.media.audio import _read_track, resample

    floor_clip(clip, preset, wave)
    resample(*_read_track(clip), preset.audio.sample_rate)


def _prep_rate(root: Path, out: Path, preset: str, clips: int) -> float:
    """clips/s of ``run_prep`` with one worker in this (fresh) process, after an untimed warm-up run."""
    # imports (librosa's take seconds) and first calls, outside the clock: a prep command pays them
    # once, a constant against minutes of decoding on a real dataset
    time_mmrebal(root, out.with_name(out.stem + "-warm-up.h5"), preset, 1)
    return clips / time_mmrebal(root, out, preset, 1)


def _floor_rates(clips: list[Path], preset_name: str) -> dict[str, float]:
    """clips/s of the floor and of the floor plus the audio track, in this (fresh) process, warmed up."""
    from mmrebal.media.audio import _read_track, resample

    preset = PRESETS.get(preset_name)
    wave, rate = _read_track(clips[0])
    ready = resample(wave, rate, preset.audio.sample_rate)
    floor_audio_clip(clips[0], preset, ready)
    rates = {}
    for name, work in ((FLOOR, floor_clip), (FLOOR_AUDIO, floor_audio_clip)):
        started = time.perf_counter()
        for clip in clips:
            work(clip, preset, ready)
        rates[name] = len(clips) / (time.perf_counter() - started)
    return rates


def per_worker_rounds(root: Path, clips: list[Path], preset: Preset, rounds: int) -> dict[str, float]:
    """Median over alternating rounds of clips/s (wall clock, every clip): ``run_prep`` with one
    worker, the decode floor, and the floor plus the audio track.

    Each round runs prep and the floors in fresh processes, as a prep worker runs alone: in one
    process, decord's decoding beside PyAV's slowed the prep after it by up to a third.
    """
    spawn = multiprocessing.get_context("spawn")
    rates: dict[str, list[float]] = {PREP_1: [], FLOOR: [], FLOOR_AUDIO: []}
    for round_ in range(rounds):
        with ProcessPoolExecutor(1, mp_context=spawn) as child:
            out = root.with_name(f"one{round_}.h5")
            rates[PREP_1].append(child.submit(_prep_rate, root, out, preset.name, len(clips)).result())
        with ProcessPoolExecutor(1, mp_context=spawn) as child:
            for name, rate in child.submit(_floor_rates, clips, preset.name).result().items():
                rates[name].append(rate)
    ratios = [prep / base for prep, base in zip(rates[PREP_1], rates[FLOOR], strict=True)]
    audio_ratios = [prep / base for prep, base in zip(rates[PREP_1], rates[FLOOR_AUDIO], strict=True)]
    return {
        **{name: float(np.median(values)) for name, values in rates.items()},
        "ratio": float(np.median(ratios)),
        "audio ratio": float(np.median(audio_ratios)),
        "spread": max(ratios) - min(ratios),
    }


def cpu_ms(work: Callable[[Path], object], clips: list[Path]) -> float:
    """CPU milliseconds per clip of ``work`` in this process, after one warm-up call (imports)."""
    work(clips[0])
    started = time.process_time()
    for clip in clips:
        work(clip)
    return (time.process_time() - started) / len(clips) * 1e3


def profile_worker(clips: list[Path], preset: Preset, journal_dir: Path) -> list[tuple[str, float]]:
    """One worker's decode, stage by stage (what ``adapter.decode`` + the journal do per clip)."""
    from mmrebal.cache.writer import SampleJournal
    from mmrebal.media.audio import _read_track, resample
    from mmrebal.media.clip import read_clip
    from mmrebal.media.features import audio_features
    from mmrebal.prep.adapters import ADAPTERS

    audio, frames = preset.audio, preset.frames
    wave, rate = _read_track(clips[0])
    ready = resample(wave, rate, audio.sample_rate)
    adapter = ADAPTERS.get("kinetics-sounds")()
    items = {item.paths["visual"]: item for item in adapter.scan(clips[0].parent.parent)[0]}
    sample = adapter.decode(items[clips[0]], preset)
    journal = SampleJournal(journal_dir / "profile.h5", "profile")
    stages = [
        (
            f"one PyAV pass: audio track ({rate} Hz) + frames (read_clip)",
            lambda c: read_clip(c, rate, frames.num_frames, frames.size, frames.fps),
        ),
        (
            f"resample {rate} -> {audio.sample_rate} Hz (soxr_hq)",
            lambda c: resample(wave, rate, audio.sample_rate),
        ),
        ("features (STFT)", lambda c: audio_features(ready, audio)),
        ("journal write (one part file, atomic rename)", lambda c: journal.write(c.stem, sample)),
        ("journal read (the assembly reads each part back once)", lambda c: journal.read(c.stem)),
        (DECODE, lambda c: adapter.decode(items[c], preset)),
        (FLOOR, lambda c: floor_clip(c, preset, ready)),
        (FLOOR_AUDIO, lambda c: floor_audio_clip(c, preset, ready)),
    ]
    out = [(name, cpu_ms(work, clips)) for name, work in stages]
    journal.remove()
    return out


DECODE = "all of it: adapter.decode (the stages above but the journal)"
PREP_1 = "mmrebal prep, 1 worker (run_prep end to end, wall clock)"
FLOOR = "decode floor (decord seeks, no resize, one STFT)"
FLOOR_AUDIO = "decode floor + the clip's audio track decoded and resampled"


def read_rates(cache: Path, dump: Path, preset: Preset, reads: int) -> tuple[float, float]:
    """Single-sample random reads per second: the cache's Dataset vs the JPEG loader (one process)."""
    import torch

    from mmrebal.cache.dataset import CacheDataset, model_inputs

    torch.set_num_threads(1)
    dataset = CacheDataset(cache, "train")
    rng = np.random.default_rng(0)
    order = rng.integers(0, len(dataset), reads)
    dataset[0]  # open the file
    started = time.perf_counter()
    for i in order:
        model_inputs(dataset.__getitems__([int(i)]), dataset.info.modalities)
    cache_rate = reads / (time.perf_counter() - started)
    folders = sorted(p for p in dump.iterdir() if p.is_dir())
    order = rng.integers(0, len(folders), reads)
    started = time.perf_counter()
    for i in order:
        frames, spec = stage2_item(folders[int(i)], preset)
        torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)
        torch.from_numpy(spec).unsqueeze(0)
    return cache_rate, reads / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=100, help="number of generated clips")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for both pipelines")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (Kinetics-Sounds: 10 s)")
    parser.add_argument("--preset", default="bss-ks", help="mmrebal preset (frames and audio settings)")
    parser.add_argument("--reads", type=int, default=200, help="random single-sample reads per loader")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the per-worker timing")
    args = parser.parse_args(argv)
    preset = PRESETS.get(args.preset)
    if preset.audio is None or preset.frames is None:
        raise SystemExit(f"preset {args.preset!r} needs audio and frames")

    with tempfile.TemporaryDirectory(prefix="mmrebal-bench-") as tmp:
        tmp_path = Path(tmp)
        started = time.perf_counter()
        clips = make_dataset(tmp_path / "ks", args.clips, args.seconds, args.workers)
        made = time.perf_counter() - started
        print(
            f"wrote {len(clips)} clips ({args.seconds:g} s, {CLIP_SIZE[1]}x{CLIP_SIZE[0]}) in {made:.1f} s",
            file=sys.stderr,
        )
        ours = time_mmrebal(tmp_path / "ks", tmp_path / "ks.h5", args.preset, args.workers)
        decode_only = time_decode_only(tmp_path / "ks", args.preset, args.workers)
        stage1, stage2 = time_reference(clips, tmp_path / "dump", preset, args.workers)
        cache_rate, jpeg_rate = read_rates(tmp_path / "ks.h5", tmp_path / "dump", preset, args.reads)
        per_worker = per_worker_rounds(tmp_path / "ks", clips, preset, args.rounds)
        profile = profile_worker(clips, preset, tmp_path)

    n, w = len(clips), args.workers
    reference = stage1 + stage2
    print(
        f"\npreset {args.preset}: {preset.frames.num_frames} frames {preset.frames.size}, "
        f"audio {preset.audio.shape()}; {n} clips, {w} workers\n"
    )
    table(
        ("pipeline", "wall s", "clips/s"),
        [
            (f"mmrebal prep (run_prep end to end, {w} workers, to HDF5)", f"{ours:.1f}", f"{n / ours:.1f}"),
            (
                f"  its decoding alone (adapter.decode, {w} workers)",
                f"{decode_only:.1f}",
                f"{n / decode_only:.1f}",
            ),
            (f"reference stage 1: frames -> JPEG + wav ({w} workers)", f"{stage1:.1f}", f"{n / stage1:.1f}"),
            (
                f"reference stage 2: PIL + librosa.load + STFT ({w} workers)",
                f"{stage2:.1f}",
                f"{n / stage2:.1f}",
            ),
            ("reference total", f"{reference:.1f}", f"{n / reference:.1f}"),
            ("ratio mmrebal prep / reference", "", f"{reference / ours:.2f}x"),
            ("ratio mmrebal decoding / reference", "", f"{reference / decode_only:.2f}x"),
        ],
    )
    print()
    table(
        ("loader (1 process, random single samples)", "samples/s"),
        [
            ("CacheDataset (HDF5)", f"{cache_rate:.1f}"),
            ("JPEG loader (PIL + librosa.load + STFT)", f"{jpeg_rate:.1f}"),
            ("ratio", f"{cache_rate / jpeg_rate:.1f}x"),
        ],
    )
    stages = dict(profile)
    decode_ratio = stages[FLOOR] / stages[DECODE]
    print()
    table(
        (f"per worker, 1 process (median of {args.rounds} alternating rounds)", "clips/s"),
        [
            (PREP_1, f"{per_worker[PREP_1]:.1f}"),
            (f"{FLOOR}, wall clock", f"{per_worker[FLOOR]:.1f}"),
            (f"{FLOOR_AUDIO}, wall clock", f"{per_worker[FLOOR_AUDIO]:.1f}"),
            (
                f"ratio prep / floor (goal >= 0.8x; spread over rounds {per_worker['spread']:.2f})",
                f"{per_worker['ratio']:.2f}x",
            ),
            ("ratio decoding / floor (CPU time: the profile below)", f"{decode_ratio:.2f}x"),
            (
                "ratio prep / (floor + audio track): the floor leaves out decoding the clip's audio",
                f"{per_worker['audio ratio']:.2f}x",
            ),
            (
                "ratio (floor + audio track) / floor: the floor itself, once it decodes the audio too",
                f"{per_worker[FLOOR_AUDIO] / per_worker[FLOOR]:.2f}x",
            ),
        ],
    )
    print()
    table(("one worker's stages, per clip", "CPU ms"), [(name, f"{ms:.1f}") for name, ms in profile])


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """A Markdown table: the first column left-aligned, the numbers right-aligned."""
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
    for number, row in enumerate([header, *rows]):
        cells = [
            row[0].ljust(widths[0]),
            *(c.rjust(width) for c, width in zip(row[1:], widths[1:], strict=True)),
        ]
        print("| " + " | ".join(cells) + " |")
        if number == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")


if __name__ == "__main__":
    main()
