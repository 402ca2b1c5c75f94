"""Each preset's output shape and numeric agreement with a direct librosa (or Kaldi-recipe) computation."""

from __future__ import annotations

import json
import math
from dataclasses import fields, replace

import librosa
import numpy as np
import pytest

from mmrebal.media.features import audio_features, fit_length, kaldi_mel_banks
from mmrebal.media.presets import AudioPreset
from mmrebal.prep.presets import PRESETS

SHAPES = {
    "ogm": ((257, 188), (1, 224, 224, 3)),
    "ogm-3f": ((257, 188), (3, 224, 224, 3)),
    "bss": ((257, 1250), (1, 224, 224, 3)),
    "bss-ks": ((257, 1003), (3, 224, 224, 3)),
    "fbank": ((128, 1024), (3, 224, 224, 3)),
    "ast": ((128, 1024), (3, 224, 224, 3)),
    "avmnist": ((64, 63), (3, 32, 32, 3)),
    "ave": ((257, 625), (3, 224, 224, 3)),
}
FRAMES_ONLY = {
    "image-text": (1, 224, 224, 3),
    "nvgesture": (8, 112, 112, 3),
    "nvgesture-i3d": (64, 224, 224, 3),
}


def noise(seconds: float, rate: int, seed: int = 0, scale: float = 0.3) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(round(seconds * rate))).astype(np.float32)


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("seconds", [0.7, 25.0])
def test_preset_shapes_for_short_and_long_audio(name: str, seconds: float):
    preset = PRESETS.get(name)
    feature = audio_features(noise(seconds, preset.audio.sample_rate), preset.audio)
    assert feature.shape == SHAPES[name][0] == preset.audio.shape()
    assert feature.dtype == np.float32 and np.isfinite(feature).all()
    assert preset.frames.shape() == SHAPES[name][1]


def reference_log_stft(wave: np.ndarray, rate: int, seconds: float) -> np.ndarray:
    """OGM-GE / BSS as written in their loaders: tile, cut, clamp, librosa.stft, log(|S| + 1e-7)."""
    samples = rate * int(seconds)
    tiled = np.tile(wave, math.ceil(samples / len(wave)))[:samples]
    tiled = np.clip(tiled, -1.0, 1.0)
    spec = librosa.stft(tiled, n_fft=512, hop_length=353, window="hann", center=True, pad_mode="constant")
    return np.log(np.abs(spec) + 1e-7)


@pytest.mark.parametrize(
    ("name", "rate", "seconds"), [("ogm", 22050, 3), ("bss", 22050, 20), ("bss-ks", 35400, 10)]
)
def test_log_stft_presets_match_librosa(name: str, rate: int, seconds: int):
    wave = noise(1.3, rate, scale=0.6)
    wave[100:110] = 3.0  # out of range: must be clamped
    ours = audio_features(wave, PRESETS.get(name).audio)
    np.testing.assert_allclose(ours, reference_log_stft(wave, rate, seconds), atol=1e-4)
    long_wave = noise(seconds + 2, rate, seed=1)
    np.testing.assert_allclose(
        audio_features(long_wave, PRESETS.get(name).audio),
        reference_log_stft(long_wave, rate, seconds),
        atol=1e-4,
    )


def test_log_stft_equals_torch_stft_with_zero_padding_and_same_window():
    """conventions.md: librosa == torch.stft only with pad_mode constant and the same window dtype."""
    import torch

    wave = noise(3.0, 22050, seed=2, scale=0.1)
    ours = audio_features(wave, PRESETS.get("ogm").audio)
    spec = torch.stft(
        torch.from_numpy(wave.astype(np.float64)),
        n_fft=512,
        hop_length=353,
        window=torch.hann_window(512, periodic=True, dtype=torch.float64),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    magnitude = spec.abs().numpy()
    np.testing.assert_allclose(np.exp(ours) - 1e-7, magnitude, rtol=1e-5, atol=1e-6 * magnitude.max())


def test_avmnist_log_mel_matches_librosa():
    preset = PRESETS.get("avmnist").audio
    wave = noise(0.6, 22050)
    padded = np.clip(np.pad(wave, (0, 22050 - len(wave))), -1, 1)
    mel = librosa.feature.melspectrogram(
        y=padded, sr=22050, n_fft=512, hop_length=353, n_mels=64, center=True, pad_mode="constant"
    )
    np.testing.assert_allclose(audio_features(wave, preset), np.log(mel + 1e-7), atol=1e-4)


def test_fit_length_tiles_pads_and_trims():
    wave = np.arange(1, 4, dtype=np.float32)
    assert fit_length(wave, 7, tile=True).tolist() == [1, 2, 3, 1, 2, 3, 1]
    assert fit_length(wave, 5, tile=False).tolist() == [1, 2, 3, 0, 0]
    assert fit_length(wave, 2, tile=True).tolist() == [1, 2]


def kaldi_recipe(wave: np.ndarray, num_bins: int = 128) -> np.ndarray:
    """Kaldi's fbank written out per frame and per filter (feature-window.cc, mel-computations.cc)."""
    rate, size, shift, fft = 16000, 400, 160, 512

    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    low, high = mel(20.0), mel(8000.0)
    delta = (high - low) / (num_bins + 1)
    banks = np.zeros((num_bins, fft // 2 + 1))
    for b in range(num_bins):
        left, center, right = low + b * delta, low + (b + 1) * delta, low + (b + 2) * delta
        for i in range(fft // 2):
            m = mel(i * rate / fft)
            if left < m < right:
                banks[b, i] = (m - left) / (center - left) if m <= center else (right - m) / (right - center)
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * i / (size - 1)) for i in range(size)])
    rows = []
    for start in range(0, len(wave) - size + 1, shift):
        frame = wave[start : start + size].astype(np.float64)
        frame = frame - frame.mean()
        emphasized = frame.copy()
        for i in range(size - 1, 0, -1):
            emphasized[i] -= 0.97 * frame[i - 1]
        emphasized[0] -= 0.97 * frame[0]
        spectrum = np.abs(np.fft.rfft(emphasized * window, n=fft)) ** 2
        rows.append(np.log(np.maximum(banks @ spectrum, np.finfo(np.float32).eps)))
    return np.array(rows).T


def test_kaldi_fbank_matches_the_kaldi_recipe_then_pads_and_normalises():
    preset = PRESETS.get("fbank").audio
    wave = noise(2.0, 16000, scale=0.1)
    raw = audio_features(wave, replace(preset, normalize=None))
    expected = kaldi_recipe(wave)
    frames = 1 + (32000 - 400) // 160
    assert expected.shape == (128, frames)
    np.testing.assert_allclose(raw[:, :frames], expected, rtol=1e-5, atol=1e-4)
    assert np.all(raw[:, frames:] == 0.0)  # zero-padded after the log, as the AST loaders do
    normalised = audio_features(wave, preset)
    np.testing.assert_allclose(normalised, (raw + 4.503877) / 10.282552, atol=1e-5)


def test_kaldi_fbank_removes_dc_and_floors_the_log():
    preset = replace(PRESETS.get("fbank").audio, normalize=None)
    constant = np.full(16000, 0.25, np.float32)
    feature = audio_features(constant, preset)
    np.testing.assert_allclose(feature[:, :98], np.log(np.finfo(np.float32).eps), rtol=1e-6)


def test_kaldi_fbank_tone_lands_in_the_nearest_mel_filter():
    preset = replace(PRESETS.get("fbank").audio, normalize=None)
    t = np.arange(16000) / 16000
    feature = audio_features((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), preset)
    banks = kaldi_mel_banks(128, 512, 16000, 20.0)
    tone_bin = round(1000 * 512 / 16000)
    assert feature[:, 50].argmax() == banks[:, tone_bin].argmax()
    assert banks[:, -1].max() == 0.0  # the Nyquist bin carries no weight


def test_params_hold_every_field_and_are_json():
    for name in PRESETS.names():
        preset = PRESETS.get(name)
        params = preset.params()
        json.dumps(params)
        assert params["preset"] == name
        assert params["frames_size"] == list(preset.frames.size)
        if name in FRAMES_ONLY:  # image and gesture presets: no audio parameters at all
            assert preset.audio is None and not any(k.startswith("audio_") for k in params)
            assert params["frames_shape"] == list(FRAMES_ONLY[name])
            continue
        for f in fields(AudioPreset):
            assert f"audio_{f.name}" in params
        assert params["audio_shape"] == list(SHAPES[name][0])


def test_with_frames_option():
    three = PRESETS.get("ogm").with_frames(3)
    assert three.frames.shape() == (3, 224, 224, 3) and three.frames.fps == 1.0
    assert three.audio == PRESETS.get("ogm").audio


def test_ast_preset_is_the_input_of_transformers_ast_feature_extractor():
    """The ``ast`` preset against ASTFeatureExtractor's defaults (what a pretrained AST was fed)."""
    from transformers import ASTFeatureExtractor

    wave = noise(3.0, 16000, seed=4, scale=0.1)
    expected = ASTFeatureExtractor()(wave, sampling_rate=16000, return_tensors="np")["input_values"][0]
    feature = audio_features(wave, PRESETS.get("ast").audio)
    assert feature.shape == (128, 1024) and expected.shape == (1024, 128)
    np.testing.assert_allclose(feature.T, expected, atol=1e-4)
