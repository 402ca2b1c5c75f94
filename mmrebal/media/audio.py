"""Audio as float32 mono at a requested rate: sound files via soundfile, video audio tracks via PyAV.

Both paths resample with the same soxr_hq resampler that ``librosa.load`` uses by default, and only
when the rates differ, so a wav and the same audio inside a clip give the same waveform.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmrebal.media import MediaError, check_complete, declared_seconds, ffmpeg_errors

if TYPE_CHECKING:
    import av


@cache
def _soundfile_suffixes() -> frozenset[str]:
    import soundfile

    return frozenset("." + ext.lower() for ext in soundfile.available_formats())


def read_audio(path: Path, sample_rate: int, min_duration_s: float = 0.0) -> np.ndarray:
    """Mono float32 waveform of a sound file or of a video's first audio track at ``sample_rate``;
    shorter than ``min_duration_s``, or shorter than its container declares, is a ``MediaError``."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: no such file; check the path")
    if path.suffix.lower() in _soundfile_suffixes():
        wave, rate = _read_soundfile(path)
    else:
        wave, rate = _read_track(path)
    return prepared(path, wave, rate, sample_rate, min_duration_s)


def prepared(path: Path, wave: np.ndarray, rate: int, sample_rate: int, min_duration_s: float) -> np.ndarray:
    """A decoded mono waveform checked for length (``MediaError``) and resampled to ``sample_rate``."""
    if wave.size == 0:
        raise MediaError(f"{path}: empty audio (0 samples); re-export the file or drop it from the dataset")
    if wave.size < min_duration_s * rate:
        raise MediaError(
            f"{path}: audio too short ({1000 * wave.size / rate:.0f} ms; the preset needs at least "
            f"{min_duration_s:g} s); drop the file or use a preset that allows it"
        )
    return resample(wave, rate, sample_rate)


def resample(wave: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    if rate == sample_rate:
        return np.ascontiguousarray(wave, dtype=np.float32)
    import librosa

    return librosa.resample(wave, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq").astype(np.float32)


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as err:
        raise MediaError(f"{path}: cannot read audio ({err}); the file is corrupt, re-export it") from None
    return data.mean(axis=1), int(rate)


def _read_track(path: Path) -> tuple[np.ndarray, int]:
    import av

    with ffmpeg_errors(path, "audio"), av.open(str(path)) as container:
        track = TrackDecoder(path, audio_stream(path, container))
        for packet in container.demux(track.stream):
            track.decode(packet)
        return track.wave()


def audio_stream(path: Path, container: av.container.InputContainer) -> av.AudioStream:
    """The container's first audio stream; none is a ``MediaError``."""
    if not container.streams.audio:
        raise MediaError(f"{path}: the clip has no audio track; use a clip with sound or drop it")
    return container.streams.audio[0]


class TrackDecoder:
    """Decodes one audio stream packet by packet (the demuxer may interleave other streams' packets)
    into its mono waveform, refused when shorter than the container declares."""

    def __init__(self, path: Path, stream: av.AudioStream) -> None:
        self.path, self.stream = path, stream
        stream.codec_context.thread_count = 1
        self.rate = int(stream.codec_context.sample_rate or stream.rate)
        self.chunks: list[np.ndarray] = []
        self.planar, self.channels = True, 1

    def decode(self, packet: av.Packet) -> None:
        """Decode one demuxed packet (an empty one flushes the decoder)."""
        for frame in self.stream.decode(packet):
            self.chunks.append(_samples(frame))
            self.planar, self.channels = frame.format.is_planar, frame.layout.nb_channels

    def wave(self) -> tuple[np.ndarray, int]:
        """(mono float32 waveform, its rate) of every packet decoded so far."""
        if not self.chunks:
            return np.zeros(0, np.float32), self.rate
        wave = _mono(np.concatenate(self.chunks, axis=1), self.planar, self.channels)
        check_complete(self.path, "audio", wave.size / self.rate, declared_seconds(self.stream))
        return wave, self.rate


def _samples(frame: av.AudioFrame) -> np.ndarray:
    """What ``frame.to_ndarray()`` gives ([channels, n] planar, [1, n * channels] packed), read as
    views of its planes: to_ndarray stacks copies, about a third of a clip's audio decode time."""
    from av.audio.frame import format_dtypes

    dtype = np.dtype(format_dtypes[frame.format.name])
    if not frame.format.is_planar:
        return np.frombuffer(frame.planes[0], dtype, frame.samples * frame.layout.nb_channels)[None]
    planes = [np.frombuffer(plane, dtype, frame.samples) for plane in frame.planes]
    return planes[0][None] if len(planes) == 1 else np.stack(planes)


def _mono(samples: np.ndarray, planar: bool, channels: int) -> np.ndarray:
    """PyAV gives [channels, n] (planar) or [1, n * channels] (packed) in the codec's sample type."""
    if not planar:
        samples = samples.reshape(-1, channels).T
    if np.issubdtype(samples.dtype, np.integer):
        scale = float(np.iinfo(samples.dtype).max + 1)
        return (samples.mean(axis=0, dtype=np.float64) / scale).astype(np.float32)
    return samples.mean(axis=0, dtype=np.float32)
