"""A replaced Realtime session, end to end: nothing the caller hears gives it away.

File leg ⇄ Call ⇄ real client ⇄ the local backend over a real loopback websocket, with
the backend's fault knobs: the connection dies mid-question or mid-answer, or the
session reaches its lifetime and is rolled over at a pause.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import structlog
from numpy.typing import NDArray

from telephony_agent.audio.analysis import best_lag_correlation
from telephony_agent.audio.resample import InboundResampler
from telephony_agent.call.bridge import CallProfile
from telephony_agent.realtime.backend import BackendOptions
from telephony_agent.realtime.recap import HEADER
from tests.call.helpers import CallResult, run_file_call, sample_speech, silence

RATE = 8000
#: The backend streams at least as fast as the 4x media clock plays.
FACTOR = 8.0
GREETING = "Thank you for calling."


def agent_runs(result: CallResult) -> dict[str, list[int]]:
    """Frame indices that carried each agent item's speech."""
    runs: dict[str, list[int]] = {}
    for index, frame in enumerate(result.leg.sent):
        if frame.speech and frame.item_id is not None:
            runs.setdefault(frame.item_id, []).append(index)
    return runs


def longest_gap_ms(frames: list[int]) -> int:
    """The longest stretch without speech inside one item's playout."""
    gaps = [b - a - 1 for a, b in itertools.pairwise(frames)]
    return max(gaps, default=0) * 20


def heard(result: CallResult, frames: list[int]) -> NDArray[np.int16]:
    return np.concatenate([result.leg.sent[i].pcm for i in frames])


def recaps(result: CallResult) -> list[str]:
    return [m for m in result.backend.stats.messages if HEADER in m]


async def test_a_reconnect_after_the_question_sends_it_again_and_it_is_answered_once() -> None:
    speech = sample_speech(RATE)
    caller = np.concatenate([silence(RATE, 300), speech])
    result = await run_file_call(
        caller,
        leg_rate=RATE,
        options=BackendOptions(realtime_factor=FACTOR, close_mid_question_code=1011),
        tail_s=7.0,
    )
    stats = result.backend.stats
    assert result.record.reconnects == 1
    assert stats.connections == 2
    # The first connection committed the question and died before answering it; the
    # second heard it again and answered it: one answer in all.
    assert stats.commits == 2
    assert (stats.responses, stats.responses_completed) == (1, 1)
    (frames,) = agent_runs(result).values()
    correlation, _ = best_lag_correlation(heard(result, frames), speech, max_lag=RATE)
    assert correlation >= 0.9, correlation  # the whole question reached the new session
    assert longest_gap_ms(frames) <= 40
    assert result.session.stats["audio_ms_replayed"] >= speech.size // 8


async def test_a_reconnect_mid_sentence_loses_none_of_the_sentence() -> None:
    speech = sample_speech(RATE)
    caller = np.concatenate([silence(RATE, 300), speech])
    result = await run_file_call(
        caller,
        leg_rate=RATE,
        options=BackendOptions(
            realtime_factor=FACTOR,
            close_mid_question_code=1011,
            close_mid_question_at="speech_started",
        ),
        tail_s=7.0,
    )
    assert result.record.reconnects == 1
    assert result.backend.stats.responses == 1
    (frames,) = agent_runs(result).values()
    correlation, _ = best_lag_correlation(heard(result, frames), speech, max_lag=RATE)
    assert correlation >= 0.9, correlation


async def test_a_reconnect_mid_answer_keeps_what_was_played_and_replays_nothing() -> None:
    speech = sample_speech(RATE)
    caller = np.concatenate([silence(RATE, 300), speech])
    result = await run_file_call(
        caller,
        leg_rate=RATE,
        options=BackendOptions(
            realtime_factor=4.0,  # as fast as the media clock: a little is queued
            close_mid_response_code=1011,
            close_after_deltas=20,  # 800 ms of the answer arrive, then the link dies
        ),
        tail_s=5.0,
    )
    stats = result.backend.stats
    assert result.record.reconnects == 1
    # The question was answered (the caller heard the start of it): not asked again,
    # and no second answer.
    assert stats.commits == 1
    assert stats.responses == 1 and stats.response_creates == 0
    (frames,) = agent_runs(result).values()
    played_ms = len(frames) * 20
    assert 300 <= played_ms <= 800, played_ms
    assert longest_gap_ms(frames) <= 40  # one run: the played part was never repeated
    (line,) = [t for t in result.record.transcript if t.speaker == "agent"]
    assert line.truncated and line.text.endswith("…")
    # The new session was told both sides, the agent's as far as it was heard.
    (recap,) = recaps(result)
    lines = recap.split(HEADER, 1)[1].strip().splitlines()
    assert lines[0].startswith("Caller: [caller speech 3.")
    assert lines[1].startswith("Agent: Echo") and lines[1].endswith("…")
    assert line.text in lines[1]  # the same words the record says were heard


async def test_a_reconnect_during_the_greeting_never_greets_again() -> None:
    speech = sample_speech(RATE)
    caller = np.concatenate([silence(RATE, 2500), speech])
    result = await run_file_call(
        caller,
        leg_rate=RATE,
        options=BackendOptions(
            realtime_factor=FACTOR, close_mid_response_code=1011, close_after_deltas=2
        ),
        tail_s=6.0,
        profile=CallProfile(greeting=GREETING),
    )
    instructions = list(result.backend.stats.response_instructions)
    assert instructions == [f"Greet the caller, saying: {GREETING}"]
    assert result.record.reconnects == 1
    # The caller's question after the lost greeting is still answered.
    assert result.backend.stats.responses_completed == 1


def floor_noise(n: int, seed: int) -> NDArray[np.int16]:
    """A faint, unique hiss under everything (far below the backend's VAD level), so
    every stretch of the caller's stream can be found again byte for byte."""
    return (np.random.default_rng(seed).standard_normal(n) * 40).astype(np.int16)


def uplink_bytes(caller: NDArray[np.int16], tail_s: float) -> bytes:
    """What the Call appends for this caller: 20 ms frames through its resampler."""
    n = RATE // 50
    total = caller.size + int(tail_s * RATE)
    total += (-total) % n
    padded = np.zeros(total, dtype=np.int16)
    padded[: caller.size] = caller
    resampler = InboundResampler(RATE, 24000)
    out = [resampler.process(frame) for frame in padded.reshape(-1, n)]
    return np.concatenate(out).astype("<i2").tobytes()


async def test_a_rollover_at_a_pause_is_inaudible_and_loses_no_caller_audio() -> None:
    speech = sample_speech(RATE)
    timeline = np.zeros(RATE * 17, dtype=np.int16)
    timeline[int(RATE * 1.5) : int(RATE * 1.5) + speech.size] += speech  # question 1
    timeline[RATE * 13 : RATE * 13 + speech.size] += speech  # question 2, after the pause
    caller = timeline + floor_noise(timeline.size, seed=11)
    tail_s = 6.0
    options: dict[str, Any] = {"max_session_s": 4.0}  # wall clock: 16 s of 4x media
    with structlog.testing.capture_logs() as logs:
        result = await run_file_call(
            caller,
            leg_rate=RATE,
            options=BackendOptions(
                realtime_factor=FACTOR, session_expire_after_s=4.0, keep_input_audio=True
            ),
            tail_s=tail_s,
            profile=CallProfile(greeting=GREETING),
            session_options=options,
        )
    stats = result.backend.stats
    events = [entry["event"] for entry in logs]
    assert result.record.rollovers == 1, events
    assert result.record.reconnects == 0
    (rolled,) = [entry for entry in logs if entry["event"] == "realtime_session_rolled_over"]
    assert rolled["at_pause"] is True
    assert "realtime_rollover_forced" not in events
    assert stats.errors_by_code.get("session_expired", 0) == 0  # never reached the limit
    # The caller heard one greeting and two whole answers, each without a gap.
    assert list(stats.response_instructions) == [f"Greet the caller, saying: {GREETING}"]
    runs = list(agent_runs(result).values())
    assert len(runs) == 3
    for frames in runs:
        assert longest_gap_ms(frames) <= 40
    for frames in runs[1:]:
        correlation, _ = best_lag_correlation(heard(result, frames), speech, max_lag=RATE)
        assert correlation >= 0.9, correlation
    # Exactly one frame per tick reached the leg through the switch.
    assert len(result.leg.sent) >= (caller.size // (RATE // 50)) + int(tail_s * 50) - 2
    # The new session was briefed with both sides.
    (recap,) = recaps(result)
    assert "Agent: Nothing to echo yet." in recap and "Caller: [caller speech 3." in recap
    # Caller audio across the switch: the old session got a prefix of the stream, the
    # new one a continuous stretch that starts before the old one's end.
    expected = uplink_bytes(caller, tail_s)
    old, new = (bytes(audio) for audio in stats.input_audio)
    assert expected.startswith(old)
    start = expected.find(new[:4800])
    assert start > 0 and expected[start : start + len(new)] == new
    gap_ms = (start - len(old)) / 48
    print(f"\nrollover: caller audio gap {gap_ms:.0f} ms (negative: overlap replayed)")
    assert -1100 <= gap_ms <= 0
