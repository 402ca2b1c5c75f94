"""Media decoding: video frames, audio tracks and wavs, spectrogram/fbank features, clip writing.

Submodules import their heavy libraries (decord, PyAV, librosa) themselves; importing this package
only defines the error type every decoder raises.
"""


class MediaError(RuntimeError):
    """A file that cannot be decoded; the message is ``"<path>: <reason>; <what to do>"``."""


def ffmpeg_reason(err: Exception) -> str:
    """FFmpeg's own words for a failure, without the path PyAV appends (the message leads with it)."""
    return getattr(err, "strerror", None) or str(err)


__all__ = ["MediaError", "ffmpeg_reason"]
