"""Audio features exactly as the presets define them: log-STFT, log-mel and Kaldi fbank.

The STFT and mel paths call librosa (the reference code's library) with an explicit ``pad_mode`` so
that no default can drift. Kaldi fbank is implemented here in numpy because torchaudio is not a
dependency; it follows ``torchaudio.compliance.kaldi.fbank`` (what the AST-style loaders call):

- frames of ``n_fft`` samples every ``hop_length`` (snip_edges: only whole frames), no dither;
- per frame: remove the DC offset, pre-emphasis x[i] -= 0.97 x[i-1] with x[-1] := x[0],
  symmetric hanning window 0.5 - 0.5 cos(2 pi i / (N - 1)), zero-padded to the next power of two;
- power spectrum, triangular filters on Kaldi's mel scale 1127 ln(1 + f / 700) from ``low_freq`` to
  Nyquist (the Nyquist bin gets weight 0), log floored at float32 epsilon;
- input in [-1, 1] as torchaudio loads it (Kaldi's own binaries see int16 values: their log energies
  are larger by ln(32768^2) ~ 20.79); computed in float64, returned as float32 (torchaudio computes
  in float32, so values agree to ~1e-5). ``use_energy`` is off, as in the AST loaders; subtracting
  the waveform mean first (AST does) changes nothing because each frame's DC offset is removed;
  a waveform shorter than one frame gives an all-padding feature where torchaudio raises.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from mmrebal.media import MediaError
from mmrebal.media.presets import AudioPreset


def audio_features(wave: np.ndarray, preset: AudioPreset) -> np.ndarray:
    """float32 [F, T] feature of a mono waveform; the shape is ``preset.shape()`` for any input length."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise MediaError(f"a waveform of shape {wave.shape}; expected non-empty mono audio")
    if preset.kind == "fbank":
        feature = kaldi_fbank(wave[: preset.num_samples], preset)
    else:
        wave = fit_length(wave, preset.num_samples, preset.tile)
        if preset.clip:
            wave = np.clip(wave, -1.0, 1.0)
        feature = log_stft(wave, preset) if preset.kind == "stft" else log_mel(wave, preset)
    if preset.normalize is not None:
        mean, std = preset.normalize
        feature = (feature - mean) / std
    return feature.astype(np.float32, copy=False)


def fit_length(wave: np.ndarray, length: int, tile: bool) -> np.ndarray:
    """Exactly ``length`` samples: trim, or repeat the clip (``tile``) / zero-pad to reach it."""
    if len(wave) >= length:
        return wave[:length]
    if tile:
        return np.tile(wave, -(-length // len(wave)))[:length]
    return np.pad(wave, (0, length - len(wave)))


def centred_stft(wave: np.ndarray, preset: AudioPreset) -> np.ndarray:
    """Complex STFT [F, T] with librosa's centring and the preset's window and pad mode."""
    import librosa

    return librosa.stft(
        wave,
        n_fft=preset.n_fft,
        hop_length=preset.hop_length,
        window=preset.window,
        center=True,
        pad_mode=preset.pad_mode,
    )


def log_stft(wave: np.ndarray, preset: AudioPreset) -> np.ndarray:
    """log(|STFT| + eps), computed in place: the same values as the expression, one array fewer."""
    magnitude = np.abs(centred_stft(wave, preset))
    magnitude += magnitude.dtype.type(preset.log_eps)
    return np.log(magnitude, out=magnitude)


def log_mel(wave: np.ndarray, preset: AudioPreset) -> np.ndarray:
    """log(mel power + eps), what ``librosa.feature.melspectrogram`` computes (its default Slaney
    filters), with the filterbank built once per preset and applied as one matrix product: librosa
    rebuilds the filters and contracts them with ``einsum`` on every call, several times slower."""
    spec = centred_stft(wave, preset)
    power = spec.real**2 + spec.imag**2
    return np.log(_mel_filters(preset.sample_rate, preset.n_fft, preset.n_mels) @ power + preset.log_eps)


@cache
def _mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)


def kaldi_mel_banks(num_bins: int, fft_size: int, sample_rate: int, low_freq: float) -> np.ndarray:
    """[num_bins, fft_size // 2 + 1] triangular filters, triangular in Kaldi mel (not in Hz)."""

    def mel(freq: np.ndarray | float) -> np.ndarray:
        return 1127.0 * np.log1p(np.asarray(freq, dtype=np.float64) / 700.0)

    low, high = mel(low_freq), mel(sample_rate / 2)
    delta = (high - low) / (num_bins + 1)
    left = low + np.arange(num_bins)[:, None] * delta
    center, right = left + delta, left + 2 * delta
    bins = mel(np.arange(fft_size // 2) * sample_rate / fft_size)[None, :]
    weights = np.maximum(0.0, np.minimum((bins - left) / (center - left), (right - bins) / (right - center)))
    return np.pad(weights, ((0, 0), (0, 1)))


def kaldi_fbank(wave: np.ndarray, preset: AudioPreset) -> np.ndarray:
    """[n_mels, num_frames_out] log mel filterbank energies (see the module docstring)."""
    size, shift = preset.n_fft, preset.hop_length
    count = 0 if len(wave) < size else 1 + (len(wave) - size) // shift
    fft_size = 1 << (size - 1).bit_length()
    out = np.zeros((preset.n_mels, preset.num_frames_out), dtype=np.float64)
    if count == 0:
        return out
    x = wave.astype(np.float64)
    frames = np.lib.stride_tricks.as_strided(x, (count, size), (x.strides[0] * shift, x.strides[0])).copy()
    frames -= frames.mean(axis=1, keepdims=True)
    frames[:, 1:] -= preset.preemphasis * frames[:, :-1].copy()
    frames[:, 0] *= 1.0 - preset.preemphasis
    frames *= 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(size) / (size - 1))
    power = np.abs(np.fft.rfft(frames, n=fft_size, axis=1)) ** 2
    banks = kaldi_mel_banks(preset.n_mels, fft_size, preset.sample_rate, preset.low_freq)
    energies = np.log(np.maximum(power @ banks.T, preset.log_eps))
    kept = min(count, preset.num_frames_out)
    out[:, :kept] = energies[:kept].T
    return out
