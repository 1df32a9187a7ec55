"""Ducking without a click, and the local speech detectors on phone audio."""

from __future__ import annotations

import importlib.util
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from telephony_agent.audio.g711 import ulaw_decode, ulaw_encode
from telephony_agent.audio.gain import RAMP_MS, GainRamp
from telephony_agent.audio.voicing import LOCAL_VADS, EnergyVoicing, make_voicing
from telephony_agent.media.audiofile import decode_audio_file

RATE = 8000


def _tone(frames: int) -> NDArray[np.int16]:
    t = np.arange(frames * 160) / RATE
    return (8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)


def test_unity_gain_hands_the_frame_back_untouched() -> None:
    gain = GainRamp(RATE)
    frame = _tone(1)
    assert gain.apply(frame) is frame


def test_ducking_ramps_down_and_back_without_a_step() -> None:
    gain = GainRamp(RATE)
    level = 10000
    frames = np.full((20, 160), level, dtype=np.int16)
    out = [gain.apply(frames[0])]
    gain.set_db(-12.0)
    out += [gain.apply(f) for f in frames[1:10]]
    gain.set_db(0.0)
    out += [gain.apply(f) for f in frames[10:]]
    gains = np.concatenate(out).astype(np.float64) / level
    ramp = RATE * RAMP_MS // 1000
    ducked = 10 ** (-12 / 20)
    assert np.all(gains[:160] == 1.0)
    assert np.allclose(gains[160 + ramp : 1600], ducked, atol=1e-4)
    assert np.all(gains[1600 + ramp :] == 1.0)
    # No click: the gain moves by one ramp step per sample at most, never jumps.
    assert np.max(np.abs(np.diff(gains))) <= (1 - ducked) / ramp + 1e-4


def test_reset_goes_back_to_unity_at_once() -> None:
    gain = GainRamp(RATE)
    gain.set_db(-12.0)
    gain.apply(_tone(1))
    gain.reset()
    frame = _tone(1)
    assert gain.apply(frame) is frame


def _phone_speech() -> NDArray[np.int16]:
    path = Path(str(files("telephony_agent") / "samples" / "book_flight.wav"))
    speech = decode_audio_file(path, RATE)
    return ulaw_decode(ulaw_encode(speech))


def _frames(x: NDArray[np.int16]) -> NDArray[np.int16]:
    return x[: x.size // 160 * 160].reshape(-1, 160)


def _speech_frames(x: NDArray[np.int16]) -> NDArray[np.bool_]:
    level = np.mean(_frames(x).astype(np.float64) ** 2, axis=1)
    return 10 * np.log10(level / 32768**2 + 1e-20) > -40  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "name",
    [
        "energy",
        pytest.param(
            "webrtc",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("webrtcvad") is None, reason="the vad extra"
            ),
        ),
    ],
)
def test_speech_is_speech_and_a_quiet_line_is_not(name: str) -> None:
    voicing = make_voicing(name, RATE)  # type: ignore[arg-type]
    rng = np.random.default_rng(1)
    speech = _phone_speech()
    hiss = (rng.standard_normal(RATE * 2 + speech.size) * 32768 * 10 ** (-60 / 20)).astype(np.int16)
    signal = hiss.copy()
    signal[RATE * 2 :] += speech
    hiss = hiss[: RATE * 2]
    verdicts = np.array([voicing.is_speech(f) for f in _frames(signal)])
    quiet = verdicts[: hiss.size // 160]
    talking = verdicts[hiss.size // 160 :][_speech_frames(speech)]
    assert quiet[10:].mean() <= 0.02
    assert talking.mean() >= 0.9


@pytest.mark.skipif(importlib.util.find_spec("webrtcvad") is None, reason="the vad extra")
def test_webrtc_keeps_speech_that_energy_loses_on_a_noisy_line() -> None:
    """Why the `webrtc` detector exists: at 15 dB SNR the energy detector misses a third
    of the speech frames, so a real interruption would take longer to be believed."""
    speech = _phone_speech().astype(np.float64)
    rng = np.random.default_rng(2)
    level = np.sqrt(np.mean(speech**2))
    hiss = rng.standard_normal(RATE * 2 + speech.size) * level * 10 ** (-15 / 20)
    line = hiss.copy()
    line[RATE * 2 :] += speech
    coded = ulaw_decode(ulaw_encode(np.clip(line, -32768, 32767).astype(np.int16)))
    talking = _speech_frames(speech.astype(np.int16))
    found = {}
    for name in LOCAL_VADS:
        voicing = make_voicing(name, RATE)
        verdicts = np.array([voicing.is_speech(f) for f in _frames(coded)])
        found[name] = verdicts[RATE * 2 // 160 :][: talking.size][talking].mean()
    assert found["webrtc"] >= 0.9, found
    assert found["energy"] <= found["webrtc"] - 0.1, found


def test_a_caller_who_speaks_from_the_first_frame_is_heard() -> None:
    """The noise floor is not learnt from the caller's own first words."""
    voicing = EnergyVoicing()
    speech = _phone_speech()
    verdicts = np.array([voicing.is_speech(f) for f in _frames(speech)])
    assert verdicts[_speech_frames(speech)][:10].all()
