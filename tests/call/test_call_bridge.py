"""The Call end to end: file leg ⇄ Call ⇄ real client ⇄ real local backend on loopback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephony_agent.audio.analysis import best_lag_correlation
from telephony_agent.call.bridge import CallProfile
from telephony_agent.realtime.backend import BackendOptions
from tests.call.helpers import CallResult, noise_burst, run_file_call, sample_speech, silence


def _agent_item_frames(result: CallResult) -> dict[str, list[int]]:
    frames: dict[str, list[int]] = {}
    for index, frame in enumerate(result.leg.sent):
        if frame.speech and frame.item_id is not None:
            frames.setdefault(frame.item_id, []).append(index)
    return frames


def assert_no_stale_audio(result: CallResult) -> None:
    """No frame of an interrupted item is sent after the interruption."""
    frames = _agent_item_frames(result)
    for barge in result.record.barge_ins:
        if barge.item_id is None:
            continue
        late = [i for i in frames.get(barge.item_id, []) if i >= barge.frames_sent]
        assert not late, f"item {barge.item_id} played {len(late)} frames after barge-in"


async def test_echo_call_returns_the_callers_speech_at_8k() -> None:
    speech = sample_speech(8000)
    caller = np.concatenate([silence(8000, 300), speech])
    result = await run_file_call(
        caller, leg_rate=8000, options=BackendOptions(realtime_factor=40.0), tail_s=5.0
    )
    heard = result.leg.received_pcm()
    correlation, lag = best_lag_correlation(heard, speech, max_lag=heard.size)
    assert correlation >= 0.9, (correlation, lag)
    speakers = [line.speaker for line in result.record.transcript]
    assert "caller" in speakers and "agent" in speakers
    assert len(result.record.latencies) == 1
    latency = result.record.latencies[0]
    assert 0 <= latency.to_first_delta_ms <= latency.to_first_frame_ms
    assert result.backend.stats.rejected_truncates == 0
    assert result.record.end_reason == "caller_hangup"
    # Every tick produced exactly one 20 ms frame at the leg rate.
    assert all(f.pcm.size == 160 for f in result.leg.sent)


async def test_barge_in_flushes_cancels_truncates_and_drops_stale_audio() -> None:
    rate = 16000
    first = noise_burst(rate, 1500, seed=1)
    interruption = noise_burst(rate, 600, seed=2)
    # Turn 1, then 0.4 s of VAD silence + about 0.5 s of the agent's echo, then barge in.
    caller = np.concatenate([first, silence(rate, 1000), interruption, silence(rate, 200)])
    result = await run_file_call(
        caller,
        leg_rate=rate,
        options=BackendOptions(realtime_factor=8.0, auto_cancel_on_speech=False),
        tail_s=3.0,
    )
    assert result.record.barge_ins, "the caller's second burst must interrupt the agent"
    barge = result.record.barge_ins[0]
    assert barge.truncated and barge.played_ms > 0
    assert result.backend.stats.truncates_accepted >= 1
    assert result.backend.stats.rejected_truncates == 0
    assert result.record.cancels >= 1
    assert_no_stale_audio(result)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    gap_ms=st.integers(min_value=420, max_value=2200),
    interruption_ms=st.integers(min_value=300, max_value=900),
    realtime_factor=st.sampled_from([1.5, 4.0, 20.0]),
    delta_ms=st.sampled_from([10, 40, 100]),
    auto_cancel=st.booleans(),
    dialect=st.sampled_from(["ga", "beta", "yandex"]),
    leg_rate=st.sampled_from([8000, 16000, 48000]),
    guard=st.booleans(),
)
def test_barge_in_at_random_moments_never_rejected_never_stale(
    gap_ms: int,
    interruption_ms: int,
    realtime_factor: float,
    delta_ms: int,
    auto_cancel: bool,
    dialect: str,
    leg_rate: int,
    guard: bool,
) -> None:
    """The §3 rule in every path, with the barge-in guard (server told neither to
    interrupt nor to answer) and without it (the server interrupts, or keeps streaming)."""
    from telephony_agent.realtime.dialect import Dialect

    caller = np.concatenate(
        [
            noise_burst(leg_rate, 900, seed=3),
            silence(leg_rate, gap_ms),
            noise_burst(leg_rate, interruption_ms, seed=4),
            silence(leg_rate, 300),
        ]
    )
    options = BackendOptions(
        realtime_factor=realtime_factor,
        delta_ms=delta_ms,
        auto_cancel_on_speech=auto_cancel,
        dialect=dialect,  # type: ignore[arg-type]
    )
    result = asyncio.run(
        run_file_call(
            caller,
            leg_rate=leg_rate,
            options=options,
            tail_s=2.0,
            dialect=Dialect(dialect),
            guard=guard,
        )
    )
    assert result.backend.stats.rejected_truncates == 0
    assert result.backend.stats.early_response_creates == 0
    assert_no_stale_audio(result)
    for barge in result.record.barge_ins:
        assert barge.played_ms >= 0


async def test_scripted_tool_calls_get_outputs_and_one_follow_up(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            [
                {
                    "say": "Let me check and transfer you.",
                    "tone_ms": 300,
                    "function_calls": [
                        {"name": "send_dtmf", "arguments": {"digits": "12#"}},
                        {"name": "transfer_call", "arguments": {"target": "sip:desk@example"}},
                    ],
                },
                {"say": "You are being transferred now.", "tone_ms": 300},
            ]
        )
    )
    caller = np.concatenate([noise_burst(8000, 800, seed=5), silence(8000, 600)])
    result = await run_file_call(
        caller,
        leg_rate=8000,
        options=BackendOptions(behaviour="script", script_path=script, realtime_factor=20.0),
        tail_s=4.0,
    )
    assert result.record.tool_calls == 2
    assert result.leg.dtmf_sent == ["12#"]
    assert result.leg.transfers == ["sip:desk@example"]
    assert result.record.end_reason == "transferred"
    assert result.backend.stats.early_response_creates == 0
    agent_lines = [line.text for line in result.record.transcript if line.speaker == "agent"]
    assert "Let me check and transfer you." in agent_lines


async def test_failed_response_speaks_a_fallback_and_the_call_goes_on() -> None:
    caller = np.concatenate(
        [noise_burst(8000, 700, seed=6), silence(8000, 1500), noise_burst(8000, 700, seed=7)]
    )
    result = await run_file_call(
        caller,
        leg_rate=8000,
        options=BackendOptions(inject_errors=True, realtime_factor=20.0),
        tail_s=3.0,
        profile=CallProfile(),
    )
    assert result.record.errors >= 1
    assert result.record.end_reason == "caller_hangup"
    assert any(f.speech for f in result.leg.sent), "the caller heard the agent"


async def test_reconnect_mid_call_is_invisible_to_the_leg() -> None:
    caller = np.concatenate(
        [
            noise_burst(8000, 700, seed=8),
            silence(8000, 1500),
            noise_burst(8000, 700, seed=9),
            silence(8000, 600),
        ]
    )
    result = await run_file_call(
        caller,
        leg_rate=8000,
        options=BackendOptions(
            close_mid_response_code=1011, close_after_deltas=2, realtime_factor=20.0
        ),
        tail_s=3.0,
    )
    assert result.record.reconnects >= 1
    assert result.record.end_reason == "caller_hangup"
    # The leg kept receiving exactly one frame per tick through the reconnect.
    assert len(result.leg.sent) >= caller.size // 160
