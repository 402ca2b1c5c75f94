"""The embedded ``avmnist`` dataset as an adapter: ``scan`` plans the samples, ``decode`` writes a
sample's clip if it is not there yet and then reads it back exactly like any other dataset's clip.

The spoken words are synthesised once by ``scan`` in a fresh process, in plan order, into
``<root>/speech.npy`` (so they are identical in every run; see ``mmrebal.prep.tts``). Writing the clips
inside ``decode`` puts the rest of the generation in the runner's worker pool and under its journal,
so it is parallel, streaming and resumable too. ``synthetic = True`` tells the runner that
``root`` is a work folder for the generated clips and that the source manifest is the generator
recipe (``item.meta``) rather than files that already exist.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mmrebal.prep.adapters import ADAPTERS
from mmrebal.prep.adapters.base import Adapter, LayoutError, PrepIssue, SourceItem
from mmrebal.prep.avmnist import (
    AvmnistSpec,
    SampleRecipe,
    mnist_digits,
    plan,
    speak_in_fresh_process,
    spec_digest,
    write_sample,
)
from mmrebal.prep.presets import Preset

_DEFAULTS = AvmnistSpec()


@ADAPTERS.register("avmnist")
class AvmnistAdapter(Adapter):
    modalities = {"audio": "spectrogram", "visual": "frames"}
    default_preset = "avmnist"
    classes = tuple(str(digit) for digit in range(10))
    synthetic = True

    def __init__(self) -> None:
        self.spec = _DEFAULTS
        self.digits: np.ndarray | None = None  # set by scan, shipped to workers with the adapter
        self.speech_path: Path | None = None
        self.offsets: np.ndarray | None = None
        self.sample_rate = 0
        self._speech: np.ndarray | None = None  # memory map of speech.npy, opened per process

    def scan(
        self,
        root: Path | None,
        size: int = _DEFAULTS.size,
        seed: int = _DEFAULTS.seed,
        audio_snr_db: float = _DEFAULTS.audio_snr_db,
        visual_noise: float = _DEFAULTS.visual_noise,
        clip_frames: int = _DEFAULTS.clip_frames,
        clip_size: int = _DEFAULTS.clip_size,
        clip_fps: float = _DEFAULTS.clip_fps,
    ) -> tuple[list[SourceItem], list[PrepIssue]]:
        if root is None:
            raise LayoutError("avmnist needs a work folder for its clips (the runner passes <out>.raw/)")
        try:
            self.spec = AvmnistSpec(
                int(size),
                int(seed),
                float(audio_snr_db),
                float(visual_noise),
                int(clip_frames),
                int(clip_size),
                float(clip_fps),
            )
        except ValueError as err:
            raise LayoutError(str(err)) from None
        folder = Path(root) / f"spec-{spec_digest(self.spec)}"  # other knobs never reuse these clips
        folder.mkdir(parents=True, exist_ok=True)
        recipes = plan(self.spec)
        self.speech_path = folder / "speech.npy"
        with speak_in_fresh_process(recipes, self.speech_path) as speech:
            self.digits = mnist_digits()
            self.offsets, self.sample_rate = speech.result()
        items = []
        for recipe in recipes:
            clip = folder / f"{recipe.sample_id}.mkv"
            paths = {"audio": clip, "visual": clip}
            items.append(SourceItem(recipe.sample_id, str(recipe.label), recipe.split, paths, asdict(recipe)))
        return items, []

    def decode(self, item: SourceItem, preset: Preset) -> dict[str, np.ndarray]:
        clip = item.paths["visual"]
        if not clip.exists():
            recipe = SampleRecipe(**item.meta)
            if self._speech is None:
                self._speech = np.load(self.speech_path, mmap_mode="r")
            speech = np.asarray(self._speech[self.offsets[recipe.index] : self.offsets[recipe.index + 1]])
            write_sample(clip, recipe, self.spec, self.digits[recipe.mnist_index], speech, self.sample_rate)
        return super().decode(item, preset)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_speech": None}
