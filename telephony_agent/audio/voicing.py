"""Is there speech in this 20 ms frame? A local answer, to time the caller's speech.

Why local at all, when the provider runs its own VAD: the provider reports
`speech_stopped` only after `silence_duration_ms` (500 ms by default) of silence, so
a 150 ms cough looks exactly like the start of a sentence until half a second later.
The barge-in guard needs to know, frame by frame, how much of the caller's turn so far
was speech, which only a detector on the caller's own frames can say. It runs only
while the agent is speaking (or its echo may still be arriving).

Two detectors, both with everything they need inside their packages (nothing is ever
downloaded):

* `energy` (default, no extra package): a frame is speech when it is 9 dB above the
  quietest frame of the last two seconds (the line's noise floor; -65 dBFS until two
  seconds have been heard) and above -55 dBFS.
  Cheap and dependable on a quiet line; it cannot tell loud line noise from speech.
* `webrtc` (the `vad` extra: webrtcvad-wheels, MIT, a 200 kB C extension): WebRTC's
  GMM detector, aggressiveness 2, on the leg's own 8/16/48 kHz frames. It keeps
  rejecting steady hiss, rumble and hum that the energy detector calls speech, and
  costs less. `benchmarks/bench_barge_in.py` measures both (and the model-based
  detectors that were considered; see docs/turn-taking.md).
"""

from __future__ import annotations

import importlib
from collections import deque
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "LOCAL_VADS",
    "EnergyVoicing",
    "LocalVad",
    "Voicing",
    "WebRtcVoicing",
    "local_vad_missing",
    "make_voicing",
]

LocalVad = Literal["energy", "webrtc"]
LOCAL_VADS: tuple[LocalVad, ...] = ("energy", "webrtc")

#: A frame this far above the noise floor is speech (energy detector), in dB.
ENERGY_MARGIN_DB = 9.0
#: Nothing quieter than this is speech, whatever the floor (dBFS).
ENERGY_MIN_DBFS = -55.0
#: The noise floor is the quietest frame of this many (two seconds of 20 ms frames).
FLOOR_FRAMES = 100
#: Until the line has been heard that long, the floor is at most this (dBFS): a caller
#: who speaks from the first frame must not become the "noise".
FLOOR_START_DBFS = -65.0
#: WebRTC aggressiveness (0-3): 2 rejected every steady line noise measured, and
#: kept 94 % of speech frames at 15 dB SNR on G.711.
WEBRTC_MODE = 2

_FULL_SCALE_SQ = 32768.0**2


class Voicing(Protocol):
    def is_speech(self, pcm: NDArray[np.int16]) -> bool: ...


class EnergyVoicing:
    """Speech is what stands clearly above the line's recent noise floor."""

    def __init__(self) -> None:
        start = 10 ** (FLOOR_START_DBFS / 10)
        self._powers: deque[float] = deque([start], maxlen=FLOOR_FRAMES)
        #: min(self._powers), kept as frames come and go (see `is_speech`).
        self._floor = start
        self._margin = 10 ** (ENERGY_MARGIN_DB / 10)
        self._minimum = 10 ** (ENERGY_MIN_DBFS / 10)

    def is_speech(self, pcm: NDArray[np.int16]) -> bool:
        if pcm.size == 0:
            return False
        x = pcm.astype(np.float64)
        power = float(np.dot(x, x)) / pcm.size / _FULL_SCALE_SQ
        powers = self._powers
        leaving = powers[0] if len(powers) == FLOOR_FRAMES else None
        powers.append(power)
        # The floor is rescanned only when the quietest frame leaves the window: on
        # every other frame one comparison keeps it exact.
        if leaving is not None and leaving <= self._floor:
            self._floor = min(powers)
        elif power < self._floor:
            self._floor = power
        return power > self._minimum and power > self._floor * self._margin


class WebRtcVoicing:
    """WebRTC's VAD on the leg's own frames (10, 20 or 30 ms at 8, 16, 32 or 48 kHz)."""

    def __init__(self, rate: int) -> None:
        if rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"the webrtc detector takes 8, 16, 32 or 48 kHz, not {rate} Hz")
        module: Any = importlib.import_module("webrtcvad")
        self._vad = module.Vad(WEBRTC_MODE)
        self.rate = rate

    def is_speech(self, pcm: NDArray[np.int16]) -> bool:
        if pcm.size * 1000 // self.rate not in (10, 20, 30):
            return False
        return bool(self._vad.is_speech(pcm.astype("<i2", copy=False).tobytes(), self.rate))


def local_vad_missing(name: str) -> str | None:
    """Why `name` cannot run here (the package to install), or None when it can."""
    if name != "webrtc":
        return None
    try:
        importlib.import_module("webrtcvad")
    except ImportError:
        return "the webrtcvad-wheels package (pip install 'telephony-agent[vad]')"
    return None


def make_voicing(name: LocalVad, rate: int) -> Voicing:
    if name == "webrtc":
        return WebRtcVoicing(rate)
    return EnergyVoicing()
