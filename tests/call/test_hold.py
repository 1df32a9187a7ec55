"""Hold audio: a soft tone, seamless loops, and starts and stops without a click."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from telephony_agent.agent import ToolWait
from telephony_agent.call.hold import (
    TONE_PERIOD_S,
    HoldAudio,
    HoldPlayer,
    ToolFeedback,
    hold_tone,
)

RATES = (8000, 16000, 48000)


def frames(player: HoldPlayer, count: int) -> list[NDArray[np.int16]]:
    out = []
    for _ in range(count):
        pcm = player.frame()
        assert pcm is not None
        out.append(pcm)
    return out


def steepest_step(pcm: NDArray[np.int16]) -> int:
    return int(np.max(np.abs(np.diff(pcm.astype(np.int32))))) if pcm.size > 1 else 0


def sine(rate: int, hz: float, seconds: float, level: float = 8000.0) -> NDArray[np.int16]:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(level * np.sin(2 * np.pi * hz * t + 0.7)).astype(np.int16)


@pytest.mark.parametrize("rate", RATES)
def test_the_tone_is_soft_in_band_and_loops_without_a_step(rate: int) -> None:
    tone = hold_tone(rate)
    assert tone.size == int(rate * TONE_PERIOD_S)
    peak = np.max(np.abs(tone)) / 32768
    assert 0.08 < peak <= 0.11  # about -20 dBFS: a chime under the voice level
    spectrum = np.abs(np.fft.rfft(tone.astype(np.float64)))
    freqs = np.fft.rfftfreq(tone.size, 1 / rate)
    in_band = spectrum[(freqs >= 300) & (freqs <= 3400)] ** 2
    assert in_band.sum() / (spectrum**2).sum() > 0.99
    # It starts and ends in silence, so the jump from its end back to its start is none.
    assert abs(int(tone[0])) <= 1 and abs(int(tone[-1])) <= 1


def test_a_looping_player_is_continuous_across_frames_and_the_wrap() -> None:
    rate = 8000
    audio = HoldAudio(sine(48000, 440.0, 0.13), 48000, loop=True)
    pcm = audio.at(rate)
    player = HoldPlayer(pcm, rate, loop=True)
    player.start()
    played = np.concatenate(frames(player, 40))  # 0.8 s: the 0.08 s loop wraps ten times
    assert played[0] == 0  # it fades in
    steady = played[rate // 100 :]
    # A 440 Hz sine at 8000 peak moves at most 2π·440/8000·8000 ≈ 2765 per sample; the
    # equal-power cross-fade may briefly add two phases (up to √2 of that). A step at the
    # loop point or a frame boundary would jump by up to twice the peak, 16000.
    assert steepest_step(steady) < 2765 * 1.45


@pytest.mark.parametrize("rate", RATES)
def test_stop_ends_on_a_frame_boundary_with_a_fade_not_a_click(rate: int) -> None:
    player = HoldPlayer(HoldAudio.tone().at(rate), rate, loop=True)
    player.start()
    before = frames(player, 30)
    player.stop()
    last = player.frame()
    assert last is not None and last.size == rate // 50
    assert player.frame() is None and not player.sounding
    # The stop frame continues the waveform where the last one ended...
    reference = HoldPlayer(HoldAudio.tone().at(rate), rate, loop=True)
    reference.start()
    unfaded = frames(reference, 31)[-1]
    assert abs(int(last[0]) - int(unfaded[0])) <= max(2, abs(int(unfaded[0])) // 50)
    # ...its energy only falls, quarter by quarter, down to silence at the boundary...
    quarters = [float(np.mean(q.astype(np.float64) ** 2)) for q in np.array_split(last, 4)]
    unfaded_quarters = [
        float(np.mean(q.astype(np.float64) ** 2)) for q in np.array_split(unfaded, 4)
    ]
    ratios = [q / u for q, u in zip(quarters, unfaded_quarters, strict=True) if u > 0]
    assert ratios == sorted(ratios, reverse=True)
    assert last[-1] == 0
    # ...and no step in it is steeper than the tone's own.
    assert steepest_step(np.concatenate([before[-1], last])) <= steepest_step(
        np.concatenate(before)
    )


def test_a_recording_plays_once_then_stops_in_silence() -> None:
    rate = 8000
    recording = sine(48000, 300.0, 0.05)  # 50 ms: three frames, the last one padded
    audio = HoldAudio(recording, 48000, loop=False)
    player = HoldPlayer(audio.at(rate), rate, loop=False)
    player.start()
    played = frames(player, 3)
    assert player.frame() is None and not player.sounding
    assert played[0][0] == 0 and played[2][-1] == 0
    ends = np.concatenate(played)
    assert abs(int(ends[rate * 50 // 1000 - 1])) < 200  # faded at its own end
    assert steepest_step(ends) < 2 * np.pi * 300 / rate * 8000 * 1.1


def test_each_leg_rate_is_prepared_once_and_shared() -> None:
    audio = HoldAudio(sine(48000, 500.0, 0.5), 48000, loop=True)
    at_8k = audio.at(8000)
    assert audio.at(8000) is at_8k
    assert abs(at_8k.size - 3600) <= 8  # 0.5 s less the 50 ms cross-fade, at 8 kHz
    assert HoldAudio.tone() is HoldAudio.tone()
    assert HoldAudio.tone().at(16000) is HoldAudio.tone().at(16000)


def test_feedback_from_settings() -> None:
    assert ToolFeedback.from_wait(ToolWait(), None) == ToolFeedback()
    hold = ToolFeedback.from_wait(
        ToolWait(feedback="hold", filler_after_s=0.5, tool_timeout_s=8.0), None
    )
    assert hold.audio is HoldAudio.tone()
    assert (hold.kind, hold.after_ms, hold.timeout_ms) == ("hold", 500, 8000)
    model = ToolFeedback.from_wait(ToolWait(feedback="model", filler_instructions="Wait."), None)
    assert (model.kind, model.audio, model.instructions) == ("model", None, "Wait.")
    with pytest.raises(ValueError):
        ToolFeedback(kind="recording")
