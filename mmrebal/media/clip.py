"""A clip's audio track and frames in one pass, for samples that take both from the same file.

Read separately (``read_audio`` + ``read_frames``) a Kinetics-Sounds clip is opened three times: PyAV
decodes the audio track, PyAV demuxes the video stream for the completeness check, and decord
decodes the frames, converting and scaling every frame it decodes on its way to the few it returns.
Here the file is demuxed once: audio packets are decoded as they come, video packets are kept, then
decoded up to the last wanted frame, and only the wanted frames are converted, through decord's own
filter graph. The arrays equal the separate readers' bit for bit (``tests/test_media.py``); one
worker decodes a 10 s clip in about two thirds of the CPU time (``benchmarks/prep.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmrebal.media import MediaError, ffmpeg_errors
from mmrebal.media.audio import TrackDecoder, audio_stream, prepared
from mmrebal.media.video import check_video_packets, decode_frames, video_stream


def read_clip(
    path: Path,
    sample_rate: int,
    num_frames: int,
    size: tuple[int, int],
    fps: float | None = None,
    min_duration_s: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(``read_audio(path, sample_rate, min_duration_s)``, ``read_frames(path, num_frames, size, fps)``)."""
    import av

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: no such file; check the path")
    with ffmpeg_errors(path, "the clip"), av.open(str(path)) as container:
        video, track = video_stream(path, container), TrackDecoder(path, audio_stream(path, container))
        packets = []
        for packet in container.demux(video, track.stream):
            if packet.stream_index != video.index:
                track.decode(packet)
            elif packet.size:
                packets.append(packet)
        wave, rate = track.wave()
        check_video_packets(path, video, packets)
        frames = decode_frames(path, video, packets, num_frames, size, fps)
    return prepared(path, wave, rate, sample_rate, min_duration_s), frames
