"""Offline speech synthesis with eSpeak NG (the library and voice data of the `espeakng-loader` wheel).

Driven through ctypes in synchronous mode: ``espeak_Synth`` returns only once the callback has been
handed every sample, so one process can synthesise words back to back with no audio device and no
threads. The library is initialised once per process, on first use. eSpeak NG keeps synthesis state
across utterances (its pitch-flutter phase, gain control, breath noise) that no API call resets, so
a word's exact samples depend on what the process said before: callers that need reproducible audio
speak a fixed sequence of words in a fresh process (see ``mmrebal.prep.avmnist.speak_in_fresh_process``).
"""

from __future__ import annotations

import ctypes
from functools import cache

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_RATE = 1  # words per minute
ESPEAK_PITCH = 3  # 0-100, 50 is the voice's normal pitch
ESPEAK_CHARS_AUTO = 0
POS_CHARACTER = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class TTSError(RuntimeError):
    """eSpeak NG refused a request (unknown voice, failed initialisation)."""


class _Engine:
    """The process-wide eSpeak NG library, initialised for synchronous synthesis."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if self.sample_rate <= 0:
            raise TTSError(
                f"espeak_Initialize failed with data at {data.decode()}; reinstall espeakng-loader"
            )
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept alive: the library holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: ctypes.POINTER(ctypes.c_short), num_samples: int, events: int) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0

    def speak(self, text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
        """int16 PCM at ``self.sample_rate``."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise TTSError(f"eSpeak NG has no voice {voice!r} (try e.g. 'en+m3' or 'en+f2')")
        self.lib.espeak_SetParameter(ESPEAK_RATE, int(rate), 0)
        self.lib.espeak_SetParameter(ESPEAK_PITCH, int(pitch), 0)
        self._chunks = []
        payload = text.encode() + b"\0"
        self.lib.espeak_Synth(payload, len(payload), 0, POS_CHARACTER, 0, ESPEAK_CHARS_AUTO, None, None)
        self.lib.espeak_Synchronize()
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        self._chunks = []
        return pcm


@cache
def _engine() -> _Engine:
    return _Engine()


def sample_rate() -> int:
    """eSpeak NG's native output rate (22,050 Hz); callers keep it rather than resample."""
    return _engine().sample_rate


def speak(text: str, voice: str = "en", rate: int = 175, pitch: int = 50) -> np.ndarray:
    """``text`` spoken by ``voice`` (``en+m3``) at ``rate`` words/min and ``pitch`` 0-100: int16 mono PCM."""
    return _engine().speak(text, voice, rate, pitch)
