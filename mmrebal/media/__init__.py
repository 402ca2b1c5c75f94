"""Media decoding: video frames, audio tracks and wavs, spectrogram/fbank features, clip writing.

Submodules import their heavy libraries (decord, PyAV, librosa) themselves; importing this package
only defines the error type every decoder raises.
"""


class MediaError(RuntimeError):
    """A file that cannot be decoded; the message is ``"<path>: <reason>; <what to do>"``."""


__all__ = ["MediaError"]
