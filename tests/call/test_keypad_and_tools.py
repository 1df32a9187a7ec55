"""Keypad entry as one user message, tool results kept, and no tool run after a barge-in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from telephony_agent.call.bridge import CallProfile
from telephony_agent.realtime.backend import BackendOptions
from telephony_agent.realtime.client import RealtimeSession
from tests.call.helpers import noise_burst, run_file_call, silence


class RecordingSession(RealtimeSession):
    """The real session, keeping a list of what the Call asked of it (and still sending it)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.asked: list[tuple[str, str]] = []

    def add_message(self, role: str, text: str) -> None:
        self.asked.append(("message", f"{role}: {text}"))
        super().add_message(role, text)

    def create_response(self, instructions: str | None = None) -> None:
        self.asked.append(("create", instructions or ""))
        super().create_response(instructions)


async def test_keypad_digits_reach_the_model_as_one_message_and_one_response() -> None:
    # Digits 100 ms apart (5 ticks of 20 ms of leg time), terminated by '#'.
    digits = {10 + 5 * i: d for i, d in enumerate("4512#")}
    result = await run_file_call(
        silence(8000, 600),
        leg_rate=8000,
        options=BackendOptions(behaviour="tone", realtime_factor=20.0),
        tail_s=3.0,
        dtmf_at=digits,
        session_class=RecordingSession,
        profile=CallProfile(dtmf_inter_digit_s=5.0),
    )
    session = result.session
    assert isinstance(session, RecordingSession)
    assert session.asked[0] == ("message", "user: The caller typed: 4 5 1 2 #")
    assert [kind for kind, _ in session.asked] == ["message", "create"]
    assert result.record.dtmf == "4512#"
    assert result.backend.stats.response_creates == 1
    caller_lines = [line.text for line in result.record.transcript if line.speaker == "caller"]
    assert caller_lines == ["[DTMF 4]", "[DTMF 5]", "[DTMF 1]", "[DTMF 2]", "[DTMF #]"]


async def test_digits_without_terminator_go_after_the_inter_digit_pause() -> None:
    result = await run_file_call(
        silence(8000, 200),
        leg_rate=8000,
        options=BackendOptions(behaviour="tone", realtime_factor=20.0),
        tail_s=2.0,
        dtmf_at={5: "7", 10: "3"},
        session_class=RecordingSession,
        profile=CallProfile(dtmf_inter_digit_s=0.3, dtmf_message="Keys: {digits}."),
    )
    session = result.session
    assert isinstance(session, RecordingSession)
    assert ("message", "user: Keys: 7 3.") in session.asked
    assert sum(1 for kind, _ in session.asked if kind == "create") == 1


async def test_the_digit_limit_sends_the_entry_at_once() -> None:
    result = await run_file_call(
        silence(8000, 200),
        leg_rate=8000,
        options=BackendOptions(behaviour="tone", realtime_factor=20.0),
        tail_s=1.0,
        dtmf_at={5: "1", 6: "2", 7: "3", 8: "4"},
        session_class=RecordingSession,
        profile=CallProfile(dtmf_inter_digit_s=30.0, dtmf_max_digits=3),
    )
    session = result.session
    assert isinstance(session, RecordingSession)
    messages = [text for kind, text in session.asked if kind == "message"]
    # Three digits fill the entry; the fourth starts a new one that the hang-up cuts off.
    assert messages == ["user: The caller typed: 1 2 3"]


async def test_tool_results_are_kept_with_their_outcome(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            [
                {
                    "say": "Pressing keys.",
                    "tone_ms": 200,
                    "function_calls": [
                        {"name": "send_dtmf", "arguments": {"digits": "9"}},
                        {"name": "send_dtmf", "arguments": {"digits": "not digits"}},
                        {"name": "send_dtmf", "arguments": "{not json"},
                    ],
                },
                {"say": "Done.", "tone_ms": 200},
            ]
        )
    )
    caller = np.concatenate([noise_burst(8000, 800, seed=3), silence(8000, 600)])
    result = await run_file_call(
        caller,
        leg_rate=8000,
        options=BackendOptions(behaviour="script", script_path=script, realtime_factor=20.0),
        tail_s=3.0,
    )
    results = result.record.tool_results
    assert [r.name for r in results] == ["send_dtmf"] * 3
    assert results[0].ok and json.loads(results[0].output) == {"ok": True}
    assert not json.loads(results[1].output)["ok"]
    assert not results[2].ok and "not valid JSON" in results[2].output
    assert result.leg.dtmf_sent == ["9"]
    tool_lines = [line.text for line in result.record.transcript if line.speaker == "tool"]
    assert len(tool_lines) == 3 and tool_lines[0].startswith("send_dtmf(")


async def test_a_barge_in_during_a_tool_calling_response_runs_no_tool(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            [
                {
                    "say": "Let me press that for you.",
                    "tone_ms": 3000,
                    "function_calls": [{"name": "send_dtmf", "arguments": {"digits": "5"}}],
                },
                {"say": "Sorry, go on.", "tone_ms": 200},
            ]
        )
    )
    # Speak, pause (the agent starts its long answer), then talk over it.
    caller = np.concatenate(
        [
            noise_burst(8000, 800, seed=7),
            silence(8000, 4000),
            noise_burst(8000, 800, seed=8),
            silence(8000, 600),
        ]
    )
    result = await run_file_call(
        caller,
        leg_rate=8000,
        # Slower than real time: the answer is still streaming when the caller barges in.
        options=BackendOptions(behaviour="script", script_path=script, realtime_factor=0.5),
        tail_s=2.0,
    )
    assert result.record.barge_ins, "the caller never interrupted"
    assert result.record.cancels >= 1
    assert result.leg.dtmf_sent == []
    assert result.record.tool_results == []
    # The record says what the caller heard of the interrupted answer, marked as cut.
    cut = [line for line in result.record.transcript if line.truncated]
    assert len(cut) == 1, result.record.transcript
    assert cut[0].speaker == "agent" and cut[0].text.endswith("…")
    assert "Let me press that for you.".startswith(cut[0].text.rstrip("…"))
    assert cut[0].start_ms < cut[0].end_ms <= result.record.barge_ins[0].at_ms + 40
