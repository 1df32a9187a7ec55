"""Agent speech starts without a stutter, and a mid-spurt underrun fades instead of clicking.

A simulated media clock (one tick per 20 ms) meets deltas arriving as a provider
streams them: 100 ms of audio each, at exactly real time or 1.05x, with jitter. What
the leg would send is compared with the whole stream resampled in one pass.
"""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from numpy.typing import NDArray

from telephony_agent.call.playback import Playback
from tests.call.helpers import sample_speech

MODEL_RATE = 24000
LEG_RATE = 8000
DELTA_MS = 100
TICK_MS = 20


def _stream(
    speed: float, *, preroll_ms: int, jitter_ms: float = 0.0, stall_at: int | None = None
) -> tuple[list[tuple[NDArray[np.int16], bool]], Playback]:
    """Frames (pcm, speech) the leg would send, until the playout is done."""
    speech = sample_speech(MODEL_RATE)[: 3 * MODEL_RATE]
    step = MODEL_RATE * DELTA_MS // 1000
    deltas = [speech[i : i + step] for i in range(0, speech.size, step)]
    rng = np.random.default_rng(7)
    arrivals: list[float] = []
    for index in range(len(deltas)):
        at = 7.0 + index * DELTA_MS / speed + float(rng.uniform(0.0, jitter_ms))
        if stall_at is not None and index >= stall_at:
            at += 300.0  # the provider stalls for 300 ms mid-answer
        arrivals.append(max(at, arrivals[-1] if arrivals else 0.0))
    playback = Playback(MODEL_RATE, LEG_RATE, preroll_ms=preroll_ms)
    frames: list[tuple[NDArray[np.int16], bool]] = []
    pushed = 0
    tick = 0
    while True:
        now = tick * TICK_MS
        while pushed < len(deltas) and arrivals[pushed] <= now:
            playback.push_delta("item", deltas[pushed].astype("<i2").tobytes())
            pushed += 1
            if pushed == len(deltas):
                playback.end_item()
        frame = playback.pop_frame()
        frames.append((frame.pcm.copy(), frame.speech))
        tick += 1
        if pushed == len(deltas) and not playback.buffer.is_playing:
            return frames, playback


def _spurt(frames: list[tuple[NDArray[np.int16], bool]]) -> tuple[NDArray[np.int16], int]:
    """The audio from the first speech frame to the last, and how many silent frames
    were inserted inside it."""
    flags = [speech for _, speech in frames]
    first = flags.index(True)
    last = len(flags) - 1 - flags[::-1].index(True)
    gaps = sum(1 for flag in flags[first : last + 1] if not flag)
    return np.concatenate([pcm for pcm, _ in frames[first : last + 1]]), gaps


def _reference() -> NDArray[np.float64]:
    speech = sample_speech(MODEL_RATE)[: 3 * MODEL_RATE]
    out: NDArray[np.float64] = soxr.resample(speech.astype(np.float32), MODEL_RATE, LEG_RATE)
    return out.astype(np.float64)


def _snr_db(heard: NDArray[np.int16], reference: NDArray[np.float64]) -> float:
    n = min(heard.size, reference.size)
    signal = reference[:n]
    noise = heard[:n].astype(np.float64) - signal
    return float(10 * np.log10(np.sum(signal**2) / max(np.sum(noise**2), 1e-9)))


@pytest.mark.parametrize(("speed", "jitter_ms"), [(1.0, 0.0), (1.05, 15.0), (1.0, 15.0)])
def test_speech_starts_without_a_gap_at_real_time_pace(speed: float, jitter_ms: float) -> None:
    frames, playback = _stream(speed, preroll_ms=80, jitter_ms=jitter_ms)
    heard, gaps = _spurt(frames)
    assert gaps == 0, "silence was inserted inside the agent's speech"
    assert playback.buffer.underruns == 0
    assert _snr_db(heard, _reference()) > 35.0


def test_without_a_preroll_the_start_stutters() -> None:
    """The defect the pre-roll removes, so this test can tell the two apart."""
    frames, _ = _stream(1.0, preroll_ms=0)
    _, gaps = _spurt(frames)
    assert gaps >= 1


def test_a_stall_mid_answer_is_counted_and_fades_instead_of_clicking() -> None:
    frames, playback = _stream(1.05, preroll_ms=80, stall_at=15)
    assert playback.buffer.underruns == 1
    flags = [speech for _, speech in frames]
    first = flags.index(True)
    gap = flags.index(False, first)
    before = frames[gap - 1][0]
    after = frames[flags.index(True, gap)][0]
    # The last samples before the gap and the first after it are ramped, not cut.
    assert abs(int(before[-1])) <= max(64, np.abs(before).max() // 8)
    assert abs(int(after[0])) <= max(64, np.abs(after).max() // 8)
