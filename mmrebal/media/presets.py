"""How media are decoded: the audio and frame settings a preparation preset fixes.

They live with the decoders that read them (:mod:`mmrebal.media.features`, :mod:`mmrebal.media.video`);
the named presets of the anchor papers that combine them are :mod:`mmrebal.prep.presets`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AudioPreset:
    """How a waveform becomes a float32 [F, T] feature (see ``mmrebal.media.features``).

    kind ``stft``: log(|STFT| + log_eps) with a centred ``window`` (librosa semantics).
    kind ``mel``: log(mel power + log_eps), librosa's Slaney mel filters.
    kind ``fbank``: Kaldi fbank; ``n_fft``/``hop_length`` are the frame length/shift in samples
    (25 ms / 10 ms), the waveform is only trimmed to ``duration_s`` and the frame axis is zero-padded
    or trimmed to ``num_frames_out`` after the log, as the AST-style loaders do.
    ``tile``: repeat a short waveform to ``duration_s`` (else zero-pad); ``clip``: clamp to [-1, 1].
    ``normalize``: (mean, std) applied as (x - mean) / std, or None.
    ``min_duration_s``: shorter audio is refused as damaged (a 10 ms file tiled or padded to seconds is
    not a sample of its class); 0.1 s is below any spoken digit or sound event of the anchors' datasets.
    """

    sample_rate: int
    duration_s: float
    kind: str
    n_fft: int | None
    hop_length: int | None
    n_mels: int | None
    tile: bool
    clip: bool
    normalize: tuple[float, float] | None
    num_frames_out: int | None
    window: str = "hann"
    pad_mode: str = "constant"
    log_eps: float = 1e-7
    preemphasis: float = 0.97
    low_freq: float = 20.0
    min_duration_s: float = 0.1

    @property
    def num_samples(self) -> int:
        return round(self.sample_rate * self.duration_s)

    def shape(self) -> tuple[int, int]:
        """[F, T] of the feature this preset produces."""
        if self.kind == "fbank":
            return (int(self.n_mels), int(self.num_frames_out))
        bins = self.n_mels if self.kind == "mel" else self.n_fft // 2 + 1
        return (int(bins), 1 + self.num_samples // self.hop_length)


@dataclass(frozen=True)
class FramePreset:
    """``num_frames`` RGB frames at ``size`` = (H, W); ``fps`` samples the clip at that rate first."""

    num_frames: int
    size: tuple[int, int]
    fps: float | None

    def shape(self) -> tuple[int, int, int, int]:
        return (self.num_frames, *self.size, 3)
