"""Preprocessing presets: the exact audio/frame settings of the anchor papers' reference code.

Each preset fixes every decoding parameter, so a cache records how it was made (``Preset.params``)
and two caches built with the same preset are comparable. Shapes follow from the numbers:
``ogm`` 257x188 (``ogm-3f``: the same with 3 frames), ``bss`` 257x1250, ``bss-ks`` 257x1003,
``fbank`` and ``ast`` 128x1024, ``avmnist`` 64x63, ``ave`` 257x625; ``image-text`` (one 224x224 image),
``nvgesture`` (8 frames at 112x112) and ``nvgesture-i3d`` (64 at 224x224) have no audio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mmrebal.media.presets import AudioPreset, FramePreset
from mmrebal.registry import Registry


@dataclass(frozen=True)
class Preset:
    name: str
    audio: AudioPreset | None
    frames: FramePreset | None
    description: str

    def params(self) -> dict[str, Any]:
        """Every parameter, flat (``audio_<field>``, ``frames_<field>``), for the cache attributes."""
        out: dict[str, Any] = {"preset": self.name, "preset_description": self.description}
        for prefix, part in (("audio", self.audio), ("frames", self.frames)):
            if part is None:
                continue
            for key, value in asdict(part).items():
                out[f"{prefix}_{key}"] = list(value) if isinstance(value, tuple) else value
            out[f"{prefix}_shape"] = list(part.shape())
        return out

    def with_frames(self, num_frames: int) -> Preset:
        """The same preset with another frame count (``ogm`` documents 2-3 frames as an option)."""
        if self.frames is None:
            raise ValueError(f"preset {self.name!r} has no frames")
        frames = FramePreset(num_frames, self.frames.size, self.frames.fps)
        return Preset(self.name, self.audio, frames, self.description)


PRESETS: Registry[Preset] = Registry("preset")


def _crema_audio(seconds: float) -> AudioPreset:
    return AudioPreset(22050, seconds, "stft", 512, 353, None, True, True, None, None)


def _add(preset: Preset) -> None:
    PRESETS.register(preset.name)(preset)


_add(
    Preset(
        "ogm",
        _crema_audio(3.0),
        FramePreset(1, (224, 224), 1.0),
        "OGM-GE CREMA-D: 22,050 Hz tiled to 3 s, clipped, log|STFT| 512/353 -> 257x188; 1 frame of the "
        "1 fps frame list at 224x224.",
    )
)
_add(
    Preset(
        "ogm-3f",
        _crema_audio(3.0),
        FramePreset(3, (224, 224), 1.0),
        "ogm with OGM-GE's multi-frame option: 3 evenly spaced frames of the 1 fps frame list.",
    )
)
_add(
    Preset(
        "bss",
        _crema_audio(20.0),
        FramePreset(1, (224, 224), 1.0),
        "BSS CREMA-D: as ogm but tiled to 20 s -> 257x1250; 1 frame at 224x224.",
    )
)
_add(
    Preset(
        "bss-ks",
        AudioPreset(35400, 10.0, "stft", 512, 353, None, True, True, None, None),
        FramePreset(3, (224, 224), None),
        "BSS Kinetics-Sounds: 35,400 Hz tiled to >= 10 s, first 10 s, log|STFT| 512/353 -> 257x1003; "
        "3 evenly spaced frames at 224x224.",
    )
)
_KALDI_FRAMES = 1024
# AST's ASTFeatureExtractor normalises with the AudioSet statistics as (x - mean) / (2 * std).
AST_MEAN, AST_STD = -4.2677393, 4.5689974


def _kaldi_fbank(normalize: tuple[float, float]) -> AudioPreset:
    """16 kHz, 128-bin Kaldi fbank over exactly 1024 frames of 25 ms / 10 ms, then ``normalize``."""
    return AudioPreset(
        16000,
        (400 + 160 * (_KALDI_FRAMES - 1)) / 16000,
        "fbank",
        400,
        160,
        128,
        False,
        False,
        normalize,
        _KALDI_FRAMES,
        window="hanning",
        log_eps=float(np.finfo(np.float32).eps),
    )


_add(
    Preset(
        "fbank",
        _kaldi_fbank((-4.503877, 10.282552)),
        FramePreset(3, (224, 224), None),
        "Kaldi fbank (torchaudio.compliance.kaldi semantics): 16 kHz, 128 mel, 25 ms / 10 ms hanning "
        "frames, no dither, pre-emphasis 0.97, DC removed, power spectrum, log floored at float32 eps, "
        "1024 frames, normalised (x + 4.503877) / 10.282552; 3 frames at 224x224.",
    )
)
_add(
    Preset(
        "ast",
        _kaldi_fbank((AST_MEAN, 2 * AST_STD)),
        FramePreset(3, (224, 224), None),
        "The input of a pretrained AST (transformers' ASTFeatureExtractor defaults): the fbank preset's "
        "Kaldi fbank (16 kHz, 128 mel, 1024 frames) normalised with AudioSet's statistics, "
        "(x + 4.2677393) / (2 * 4.5689974); 3 frames at 224x224.",
    )
)
_add(
    Preset(
        "avmnist",
        AudioPreset(22050, 1.0, "mel", 512, 353, 64, False, True, None, None),
        FramePreset(3, (32, 32), None),
        "Embedded AV-MNIST: 1 s at 22,050 Hz (zero-padded), log-mel 64 bins, n_fft 512 hop 353 -> 64x63; "
        "3 evenly spaced frames at 32x32 (sized for CPU training).",
    )
)
_add(
    Preset(
        "image-text",
        None,
        FramePreset(1, (224, 224), None),
        "Image+text (Twitter2015, Sarcasm): one 224x224 image (adapter option crop: resize or "
        "center = Resize 256 + CenterCrop 224); text tokenised by the adapter (options text_model, "
        "max_length, default 64).",
    )
)
_add(
    Preset(
        "nvgesture",
        None,
        FramePreset(8, (112, 112), None),
        "NVGesture, CPU-sized: 8 evenly spaced frames of the annotated gesture window at 112x112 for "
        "rgb, depth and flow (Farneback on the same window when no flow video is given).",
    )
)
_add(
    Preset(
        "nvgesture-i3d",
        None,
        FramePreset(64, (224, 224), None),
        "NVGesture for I3D-style encoders (GPU): 64 evenly spaced frames of the gesture window at 224x224.",
    )
)
_add(
    Preset(
        "ave",
        _crema_audio(10.0),
        FramePreset(3, (224, 224), None),
        "AVE: the OGM-style audio of the reference code on AVE's 10 s clips (22,050 Hz tiled to 10 s, "
        "clipped, log|STFT| 512/353 -> 257x625); 3 evenly spaced frames at 224x224.",
    )
)
