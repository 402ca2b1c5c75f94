"""Decoding on real small files written here with PyAV and soundfile."""

from __future__ import annotations

import logging
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from mmrebal.media import MediaError, video
from mmrebal.media.audio import read_audio
from mmrebal.media.clip import read_clip
from mmrebal.media.image import read_image
from mmrebal.media.video import frame_indices, read_frames, write_clip

SR = 22050


def ramp_frames(count: int, height: int = 32, width: int = 48) -> np.ndarray:
    """Frame i is a flat grey of level 20 * i, so a decoded frame tells which index it was."""
    levels = (np.arange(count) * 20).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()


def tone(seconds: float, freq: float = 440.0, rate: int = SR) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def levels_of(frames: np.ndarray) -> np.ndarray:
    return np.round(frames.reshape(len(frames), -1).mean(axis=1) / 20).astype(int)


def test_frame_indices_sorted_even_and_fps_based():
    assert frame_indices(10, 3, 25.0).tolist() == [1, 5, 8]
    assert frame_indices(2, 3, 25.0).tolist() == [0, 1, 1]
    # 3 s at 25 fps sampled at 1 fps -> candidates 0, 25, 50; one frame is the middle second
    assert frame_indices(75, 1, 25.0, fps=1.0).tolist() == [25]
    assert frame_indices(75, 3, 25.0, fps=1.0).tolist() == [0, 25, 50]
    assert frame_indices(80, 2, 25.0, fps=1.0).tolist() == [25, 75]
    many = frame_indices(1000, 16, 30.0)
    assert np.all(np.diff(many) > 0)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_read_frames_picks_the_right_frames_with_decord_and_pyav(tmp_path: Path, suffix: str):
    path = tmp_path / f"ramp{suffix}"
    write_clip(path, ramp_frames(10), fps=10)
    frames = read_frames(path, 3, (16, 24))
    assert frames.shape == (3, 16, 24, 3) and frames.dtype == np.uint8
    assert levels_of(frames).tolist() == [1, 5, 8]
    np.testing.assert_array_equal(video._read_pyav(path, 3, (16, 24), None), frames)


@pytest.mark.parametrize("side", [32, 48])
def test_decord_reads_padded_widths_exactly_like_pyav(tmp_path: Path, side: int):
    """decord2 pads the rows of 32- and 48-wide frames; the reader strips the padding."""
    path = tmp_path / "noise.mkv"
    rng = np.random.default_rng(side)
    write_clip(path, rng.integers(0, 256, (6, side, side, 3), dtype=np.uint8), fps=8)
    by_decord = video._read_decord(path, 3, (side, side), None)
    assert by_decord.shape == (3, side, side, 3) and by_decord.flags.c_contiguous
    np.testing.assert_array_equal(by_decord, video._read_pyav(path, 3, (side, side), None))


def smooth_clip(path: Path, count: int = 12, side: int = 64, **audio: object) -> Path:
    """Smooth moving colour fields: resizing them exercises the scaler's filter, not just its rounding."""
    y, x = np.mgrid[0:side, 0:side] / side
    frames = [np.stack([np.sin(6 * x + t), np.cos(5 * y - t), np.sin(4 * (x + y))], -1) for t in range(count)]
    write_clip(path, (128 + 100 * np.stack(frames)).astype(np.uint8), fps=8, **audio)
    return path


def test_pyav_resizes_bit_for_bit_like_decord(tmp_path: Path):
    """PyAV's frames go through decord's own filter graph, so even resized frames are equal."""
    path = smooth_clip(tmp_path / "smooth.mkv")
    for size in [(32, 32), (16, 24), (48, 40)]:
        np.testing.assert_array_equal(
            video._read_pyav(path, 3, size, None), video._read_decord(path, 3, size, None)
        )


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize(("size", "fps"), [((32, 32), None), ((24, 40), 1.0), ((64, 64), None)])
def test_read_clip_equals_the_separate_readers(tmp_path: Path, suffix: str, size, fps):
    path = smooth_clip(tmp_path / f"av{suffix}", count=24, audio=tone(3.0), sample_rate=SR)
    wave, frames = read_clip(path, 16000, 3, size, fps)
    np.testing.assert_array_equal(frames, read_frames(path, 3, size, fps))
    np.testing.assert_array_equal(wave, read_audio(path, 16000))


def test_read_clip_equals_the_separate_readers_with_b_frames(tmp_path: Path):
    """Reordered (B-) frames and stereo 44.1 kHz AAC, as in downloaded clips; write_clip has neither."""
    import av

    path = tmp_path / "bframes.mp4"
    y, x = np.mgrid[0:48, 0:64] / 48
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.options = {"preset": "medium", "bf": "3", "g": "24"}
        sound = container.add_stream("aac", rate=44100)
        sound.layout = "stereo"
        for t in range(60):
            image = np.stack([np.sin(6 * x + t / 5), np.cos(5 * y - t / 7), np.sin(4 * (x + y) + t / 3)], -1)
            frame = av.VideoFrame.from_ndarray((128 + 100 * image).astype(np.uint8), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        wave = tone(2.4, rate=44100)
        chunk = av.AudioFrame.from_ndarray(np.stack([wave, -wave]), format="fltp", layout="stereo")
        chunk.sample_rate = 44100
        container.mux(sound.encode(chunk))
        container.mux(sound.encode())
        assert video.codec_context.max_b_frames == 3
    for num_frames, size, fps in [(3, (32, 32), None), (2, (24, 40), 1.0), (8, (48, 64), None)]:
        wave, frames = read_clip(path, 16000, num_frames, size, fps)
        np.testing.assert_array_equal(frames, read_frames(path, num_frames, size, fps))
        np.testing.assert_array_equal(wave, read_audio(path, 16000))


def test_read_clip_refuses_short_audio_and_missing_files(tmp_path: Path):
    write_clip(tmp_path / "a.mp4", ramp_frames(8), fps=8, audio=tone(1.0), sample_rate=SR)
    with pytest.raises(MediaError, match=r"a\.mp4: audio too short"):
        read_clip(tmp_path / "a.mp4", SR, 3, (16, 16), min_duration_s=5.0)
    with pytest.raises(MediaError, match=r"nope\.mp4: no such file"):
        read_clip(tmp_path / "nope.mp4", SR, 3, (16, 16))


def test_pyav_fallback_is_used_and_logged_once(tmp_path: Path, monkeypatch, caplog):
    path = tmp_path / "ramp.mkv"
    write_clip(path, ramp_frames(10), fps=10)

    def broken(*args, **kwargs):
        raise RuntimeError("decord cannot open this")

    monkeypatch.setattr(video, "_read_decord", broken)
    monkeypatch.setattr(video, "_fallback_logged", False)
    with caplog.at_level(logging.INFO, logger="mmrebal.media.video"):
        first = read_frames(path, 3, (16, 16))
        read_frames(path, 3, (16, 16))
    assert levels_of(first).tolist() == [1, 5, 8]
    assert sum("using PyAV" in r.getMessage() for r in caplog.records) == 1


def test_read_audio_wav_resamples_like_librosa(tmp_path: Path):
    wave = tone(0.5, rate=8000)
    sf.write(tmp_path / "a.wav", wave, 8000)
    same_rate = read_audio(tmp_path / "a.wav", 8000)
    assert same_rate.dtype == np.float32
    np.testing.assert_allclose(same_rate, wave, atol=1e-4)
    resampled = read_audio(tmp_path / "a.wav", SR)
    expected, _ = librosa.load(tmp_path / "a.wav", sr=SR)
    np.testing.assert_allclose(resampled, expected, atol=1e-6)


def test_read_audio_stereo_is_averaged(tmp_path: Path):
    left, right = tone(0.2), tone(0.2, freq=880.0)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), SR)
    np.testing.assert_allclose(read_audio(tmp_path / "s.wav", SR), (left + right) / 2, atol=1e-4)


def test_audio_track_of_clips(tmp_path: Path):
    wave = tone(1.0)
    write_clip(tmp_path / "pcm.mkv", ramp_frames(4), fps=4, audio=wave, sample_rate=SR)
    np.testing.assert_allclose(read_audio(tmp_path / "pcm.mkv", SR), wave, atol=1 / 16384)
    write_clip(tmp_path / "aac.mp4", ramp_frames(4), fps=4, audio=wave, sample_rate=SR)
    decoded = read_audio(tmp_path / "aac.mp4", SR)
    assert len(decoded) >= len(wave)  # AAC adds priming samples: features trim to length
    assert 0.2 < np.sqrt(np.mean(decoded**2)) < 0.4


def test_read_image(tmp_path: Path):
    from PIL import Image

    Image.fromarray(np.full((20, 30, 3), 100, np.uint8)).save(tmp_path / "i.png")
    image = read_image(tmp_path / "i.png", (8, 12))
    assert image.shape == (8, 12, 3) and image.dtype == np.uint8 and image.max() == 100


def test_corrupt_clip_message(tmp_path: Path):
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(MediaError, match=r"corrupt\.mp4: cannot decode video .*corrupt or truncated"):
        read_frames(path, 3, (16, 16))
    with pytest.raises(MediaError, match=r"corrupt\.mp4: cannot decode audio"):
        read_audio(path, SR)


def test_truncated_clip_message(tmp_path: Path):
    good = tmp_path / "good.mp4"
    write_clip(good, ramp_frames(8), fps=8, audio=tone(1.0), sample_rate=SR)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(MediaError, match=r"cut\.mp4: .*corrupt or truncated"):
        read_frames(cut, 3, (16, 16))
    with pytest.raises(MediaError, match=r"cut\.mp4: .*corrupt or truncated"):
        read_audio(cut, SR)
    with pytest.raises(MediaError, match=r"cut\.mp4: .*corrupt or truncated"):
        read_clip(cut, SR, 3, (16, 16))


def test_clip_without_audio_track_message(tmp_path: Path):
    path = tmp_path / "silent.mp4"
    write_clip(path, ramp_frames(4), fps=4)
    with pytest.raises(MediaError, match=r"silent\.mp4: the clip has no audio track"):
        read_audio(path, SR)
    with pytest.raises(MediaError, match=r"silent\.mp4: the clip has no audio track"):
        read_clip(path, SR, 3, (16, 16))


def test_empty_wav_and_missing_file_messages(tmp_path: Path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), SR)
    with pytest.raises(MediaError, match=r"empty\.wav: empty audio \(0 samples\)"):
        read_audio(tmp_path / "empty.wav", SR)
    with pytest.raises(MediaError, match=r"nope\.wav: no such file"):
        read_audio(tmp_path / "nope.wav", SR)
    (tmp_path / "junk.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(MediaError, match=r"junk\.wav: cannot read audio"):
        read_audio(tmp_path / "junk.wav", SR)


def test_write_clip_rejects_bad_input(tmp_path: Path):
    with pytest.raises(ValueError, match="even frame sizes"):
        write_clip(tmp_path / "odd.mp4", ramp_frames(2, 15, 16), fps=2)
    with pytest.raises(ValueError, match="sample_rate"):
        write_clip(tmp_path / "a.mp4", ramp_frames(2), fps=2, audio=tone(0.1))
    assert not list(tmp_path.iterdir())


def test_stereo_packed_track_is_averaged(tmp_path: Path):
    import av

    left = tone(0.5)
    stereo = np.stack([left, -0.5 * left])
    path = tmp_path / "stereo.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=SR)
        stream.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo), format="fltp", layout="stereo")
        frame.sample_rate = SR
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    np.testing.assert_allclose(read_audio(path, SR), 0.25 * left, atol=1 / 16384)


@pytest.mark.parametrize(
    ("fmt", "layout", "dtype"),
    [("fltp", "stereo", np.float32), ("fltp", "mono", np.float32), ("s16", "stereo", np.int16),
     ("s32p", "5.1", np.int32), ("dbl", "mono", np.float64)],
)
def test_audio_samples_are_read_from_the_planes_as_to_ndarray_gives_them(fmt, layout, dtype):
    import av

    from mmrebal.media.audio import _samples

    channels = av.AudioLayout(layout).nb_channels
    planar = fmt.endswith("p")
    rng = np.random.default_rng(0)
    values = rng.integers(-1000, 1000, (channels, 333) if planar else (1, 333 * channels)).astype(dtype)
    frame = av.AudioFrame.from_ndarray(values, format=fmt, layout=layout)
    got = _samples(frame)
    assert got.dtype == frame.to_ndarray().dtype and got.shape == frame.to_ndarray().shape
    np.testing.assert_array_equal(got, frame.to_ndarray())
    np.testing.assert_array_equal(got, values)
