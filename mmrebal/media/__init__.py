"""Media decoding: video frames, audio tracks and wavs, spectrogram/fbank features, clip writing.

Submodules import their heavy libraries (decord, PyAV, librosa) themselves; importing this package
only defines the error type every decoder raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class MediaError(RuntimeError):
    """A file that cannot be decoded; the message is ``"<path>: <reason>; <what to do>"``."""


def ffmpeg_reason(err: Exception) -> str:
    """FFmpeg's own words for a failure, without the path PyAV appends (the message leads with it)."""
    return getattr(err, "strerror", None) or str(err)


@contextmanager
def ffmpeg_errors(path: Path, what: str) -> Iterator[None]:
    """PyAV's errors inside the block become one ``MediaError`` line naming ``path`` and ``what``."""
    import av

    try:
        yield
    except (av.FFmpegError, ValueError, OSError) as err:
        raise MediaError(
            f"{path}: cannot decode {what} ({ffmpeg_reason(err)}); corrupt or truncated file, re-encode it"
        ) from None


def declared_seconds(stream: object) -> float | None:
    """A PyAV stream's duration as the container's header announces it: MP4/MOV per stream, Matroska
    in the stream's ``DURATION`` tag (``HH:MM:SS.fraction``); None when neither says."""
    duration, time_base = getattr(stream, "duration", None), getattr(stream, "time_base", None)
    if duration and time_base:
        return float(duration * time_base)
    tag = (getattr(stream, "metadata", None) or {}).get("DURATION", "")
    try:
        hours, minutes, seconds = tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def check_complete(path: object, what: str, present_s: float, declared_s: float | None) -> None:
    """Refuse media cut short: ``present_s`` seconds decoded (or demuxed) of the ``declared_s`` its
    container's header announces. A download cut in half still opens and decodes without an error
    (FFmpeg only logs), so only this comparison notices; 10 % + 0.1 s covers encoder padding."""
    if declared_s and present_s < 0.9 * declared_s - 0.1:
        raise MediaError(
            f"{path}: truncated {what}: {present_s:.2f} s of the {declared_s:.2f} s its container declares; "
            "the file is cut short, download or copy it again"
        )


__all__ = ["MediaError", "check_complete", "declared_seconds", "ffmpeg_errors", "ffmpeg_reason"]
