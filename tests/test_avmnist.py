"""The embedded avmnist dataset: eSpeak NG speech, the generator, and `mmrebal prep avmnist` end to end."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from mmrebal.cache.format import read_info
from mmrebal.cli import app
from mmrebal.media.video import read_frames
from mmrebal.prep import avmnist, tts
from mmrebal.prep.avmnist import TEST_VOICES, AvmnistSpec, plan, render_audio, render_frames


def test_espeak_speaks_digit_names_at_its_native_rate():
    assert tts.sample_rate() == 22050
    seven = tts.speak("seven", "en+m3", 170, 50)
    assert seven.dtype == np.int16 and 0.2 * 22050 < len(seven) < 1.5 * 22050
    assert np.abs(seven).max() > 3000  # real speech, not silence
    other = tts.speak("seven", "en+f4", 170, 50)
    assert len(other) != len(seven) or not np.array_equal(other, seven)
    assert len(tts.speak("seven", "en+m3", 100, 50)) > len(tts.speak("seven", "en+m3", 300, 50))
    with pytest.raises(tts.TTSError, match="no voice 'xx\\+nobody'"):
        tts.speak("one", "xx+nobody")


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return avmnist.mnist_digits()


def test_plan_is_class_balanced_seeded_and_split_by_held_out_voices(digits):
    recipes = plan(AvmnistSpec(size=200, seed=1))
    assert Counter(r.label for r in recipes) == dict.fromkeys(range(10), 20)
    assert all((r.split == "test") == (r.voice in TEST_VOICES) for r in recipes)
    assert 0 < sum(r.split == "test" for r in recipes) < 100
    indices = [r.mnist_index for r in recipes]
    assert len(set(indices)) == len(indices)  # every sample has its own handwritten digit
    assert all(r.mnist_index // avmnist.MNIST_PER_CLASS == r.label for r in recipes)
    assert plan(AvmnistSpec(size=200, seed=1)) == recipes
    assert plan(AvmnistSpec(size=200, seed=2)) != recipes
    assert digits.shape == (5000, 28, 28) and digits.dtype == np.uint8 and digits.max() == 255
    with pytest.raises(ValueError, match="--size"):
        AvmnistSpec(size=6000)


def test_audio_noise_follows_the_snr_knob():
    rng = np.random.default_rng(0)
    word = (0.3 * np.sin(np.arange(8000) * 0.07)).astype(np.float32)
    padded = np.concatenate([np.zeros(500, np.float32), word, np.zeros(500, np.float32)])
    for snr in (0.0, 10.0):
        wave = render_audio(padded, 22050, AvmnistSpec(audio_snr_db=snr), rng)
        assert wave.shape == (22050,) and wave.dtype == np.float32
        total = float(np.mean(wave.astype(np.float64) ** 2))
        speech = float(np.mean(word.astype(np.float64) ** 2)) * len(word) / len(wave)
        noise = total - speech
        assert noise == pytest.approx(np.mean(word**2) / 10 ** (snr / 10), rel=0.1)


def test_frames_move_and_visual_noise_follows_its_knob(digits):
    digit = digits[0]
    clean = render_frames(digit, AvmnistSpec(visual_noise=0.0), np.random.default_rng(3))
    noisy = render_frames(digit, AvmnistSpec(visual_noise=0.5), np.random.default_rng(3))
    assert clean.shape == (8, 32, 32, 3) and clean.dtype == np.uint8
    assert not np.array_equal(clean[0], clean[-1])  # the digit slides
    corner = clean[:, 0, 0]
    assert (corner == corner[0]).all()  # a clean background is one flat colour
    assert (noisy.astype(float) - clean).std() > 60


def test_speech_is_identical_in_every_run(tmp_path: Path):
    recipes = plan(AvmnistSpec(size=20, seed=4))
    with avmnist.speak_in_fresh_process(recipes, tmp_path / "a.npy") as speech:
        first, rate = speech.result()
    with avmnist.speak_in_fresh_process(recipes, tmp_path / "b.npy") as speech:
        second, _ = speech.result()
    assert rate == 22050 and len(first) == 21
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_ensure_default_cache_builds_once_under_mmrebal_home(tmp_path: Path, monkeypatch):
    import mmrebal.prep.runner as runner

    calls = []

    def fake_run_prep(dataset, root, out, **kwargs):
        calls.append((dataset, root, out, kwargs))
        Path(out).write_bytes(b"built")

    monkeypatch.setenv("MMREBAL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(runner, "run_prep", fake_run_prep)
    path = avmnist.ensure_default_cache(workers=2)
    assert path == tmp_path / "home" / "avmnist.h5" and path.read_bytes() == b"built"
    assert calls == [("avmnist", None, path, {"workers": 2})]
    assert avmnist.ensure_default_cache() == path and len(calls) == 1


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("avm") / "avm.h5"
    args = ["prep", "avmnist", "--out", str(out), "--size", "40", "--workers", "2", "--keep-raw"]
    args += ["--audio-snr-db", "2.5", "--seed", "3"]
    return out, CliRunner().invoke(app, args)


@pytest.mark.slow
def test_prep_avmnist_cli_writes_the_documented_layout(built):
    out, result = built
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and "40 samples" in result.stdout
    with h5py.File(out) as f:
        assert f["label"].shape == (40,) and f["label"].dtype == np.int64
        assert f["audio/spec"].shape == (40, 64, 63) and f["audio/spec"].dtype == np.float32
        assert f["visual/frames"].shape == (40, 3, 32, 32, 3) and f["visual/frames"].dtype == np.uint8
        assert f["audio/spec"].chunks == (1, 64, 63)
        assert f["audio"].attrs["kind"] == "spectrogram" and f["visual"].attrs["kind"] == "frames"
        assert [c.decode() for c in f["class_names"][:]] == [str(d) for d in range(10)]
        ids = [i.decode() for i in f["sample_id"][:]]
    assert len(set(ids)) == 40
    info = read_info(out)
    attrs = info.attrs
    assert attrs["dataset"] == "avmnist" and attrs["preset"] == "avmnist"
    assert (
        attrs["audio_n_mels"] == 64
        and attrs["frames_size"] == [32, 32]
        and attrs["audio_sample_rate"] == 22050
    )
    assert attrs["option_size"] == 40 and attrs["option_seed"] == 3 and attrs["option_audio_snr_db"] == 2.5
    assert attrs["option_visual_noise"] == AvmnistSpec().visual_noise and attrs["option_clip_frames"] == 8
    assert len(attrs["source_sha256"]) == 64 and attrs["mmrebal_version"] and attrs["created"]
    assert attrs["val_split"] == {"method": "stratified", "fraction": 0.1, "seed": 4, "from": "train"}
    assert attrs["test_split"] == {"method": "given by the source"}
    assert info.split_counts["val"] > 0 and info.split_counts["test"] > 0
    assert not out.with_name("avm.h5.parts").exists()


@pytest.mark.slow
def test_kept_clips_are_real_video_with_speech_and_match_the_cache(built):
    out, result = built
    assert result.exit_code == 0, result.output
    (clip,) = out.with_name("avm.h5.raw").glob("spec-*/avmnist_00007.mkv")
    with av.open(str(clip)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "pcm_s16le"
        assert container.streams.audio[0].codec_context.sample_rate == 22050
    with h5py.File(out) as f:
        row = [i.decode() for i in f["sample_id"][:]].index("avmnist_00007")
        np.testing.assert_array_equal(f["visual/frames"][row], read_frames(clip, 3, (32, 32)))


@pytest.mark.slow
def test_default_regime_keeps_its_headroom(tmp_path: Path):
    """The default regime keeps its headroom: on a small default build, a linear probe per modality is
    well above chance and far from the ceiling, and one on both modalities clearly beats the better
    single one (their errors differ, so fusing them has something to gain)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from mmrebal.prep.runner import run_prep

    out = tmp_path / "probe.h5"
    run_prep("avmnist", None, out, workers=2, size=1000)
    with h5py.File(out) as f:
        labels = f["label"][:]
        test = f["split"][:] == b"test"
        features = {}
        for key in ("audio/spec", "visual/frames"):
            x = f[key][:].reshape(len(labels), -1).astype(np.float32)
            features[key] = StandardScaler().fit(x[~test]).transform(x)
    features["both"] = np.concatenate([features["audio/spec"], features["visual/frames"]], axis=1)
    accuracy = {}
    for key, x in features.items():
        probe = LogisticRegression(C=0.05, max_iter=300).fit(x[~test], labels[~test])
        accuracy[key] = probe.score(x[test], labels[test])
    for key in ("audio/spec", "visual/frames"):
        assert 0.25 < accuracy[key] < 0.8, accuracy
    assert accuracy["both"] > max(accuracy["audio/spec"], accuracy["visual/frames"]) + 0.06, accuracy


def test_other_knobs_never_reuse_kept_clips(tmp_path: Path):
    from mmrebal.prep.adapters.avmnist import AvmnistAdapter

    first, _ = AvmnistAdapter().scan(tmp_path, size=10, visual_noise=0.1)
    same, _ = AvmnistAdapter().scan(tmp_path, size=10, visual_noise=0.1)
    other, _ = AvmnistAdapter().scan(tmp_path, size=10, visual_noise=0.2)
    assert first[0].paths == same[0].paths
    assert first[0].paths["visual"].parent != other[0].paths["visual"].parent
    assert {i.sample_id for i in first} == {i.sample_id for i in other}
