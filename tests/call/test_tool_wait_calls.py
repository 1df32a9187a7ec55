"""Whole calls through the local backend over a real websocket, with a slow tool: what
the caller hears while it runs, what the model is sent, and in which order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog
from numpy.typing import NDArray

from telephony_agent.audio.playout import Frame
from telephony_agent.call.bridge import CallProfile
from telephony_agent.call.hold import HoldAudio, ToolFeedback
from telephony_agent.call.record import TranscriptLine
from telephony_agent.call.tools import Tool, ToolContext, ToolRegistry, default_registry
from telephony_agent.realtime.backend import BackendOptions
from telephony_agent.realtime.client import RealtimeSession
from telephony_agent.realtime.events import ResponseDone, ServerEvent
from telephony_agent.realtime.session_config import ToolSpec
from tests.call.helpers import CallResult, noise_burst, run_file_call, silence

FILLER_WORDS = "Say that you are checking."


class WatchedSession(RealtimeSession):
    """The real session, keeping in order what the Call sent and which responses ended."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log: list[tuple[str, str]] = []
        self.filler_asked = asyncio.Event()

    def create_response(self, instructions: str | None = None) -> None:
        self.log.append(("create", instructions or ""))
        if instructions == FILLER_WORDS:
            self.filler_asked.set()
        super().create_response(instructions)

    def send_function_output(self, call_id: str, output: str) -> None:
        self.log.append(("output", output))
        super().send_function_output(call_id, output)

    async def events(self) -> AsyncIterator[ServerEvent]:
        async for event in super().events():
            if isinstance(event, ResponseDone):
                self.log.append(("done", event.status))
            yield event


class Recorder:
    def __init__(self) -> None:
        self.agent: list[NDArray[np.int16] | None] = []

    def add(self, caller: NDArray[np.int16] | None, agent: NDArray[np.int16] | None) -> None:
        self.agent.append(None if agent is None else agent.copy())


def script(tmp_path: Path, *turns: dict[str, Any]) -> Path:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(list(turns)), encoding="utf-8")
    return path


LOOKUP = {
    "say": "Let me look that up.",
    "tone_ms": 300,
    "function_calls": [{"name": "slow_lookup", "arguments": {}}],
}
ANSWER = {"say": "It is free.", "tone_ms": 600}


def tools_with(handler: Any) -> ToolRegistry:
    registry = default_registry()
    registry.register(Tool(ToolSpec("slow_lookup", "Looks slowly."), handler, timeout_s=20.0))
    return registry


def sleeping(seconds: float) -> Any:
    async def handler(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        await asyncio.sleep(seconds)
        return {"free": True}

    return handler


def runs(frames: list[Frame]) -> list[tuple[str | None, int, int]]:
    """(item or "hold", first index, last index) for each run of speech frames."""
    out: list[tuple[str | None, int, int]] = []
    for index, frame in enumerate(frames):
        if not frame.speech:
            continue
        key = frame.item_id or "hold"
        if out and out[-1][0] == key and out[-1][2] == index - 1:
            out[-1] = (key, out[-1][1], index)
        else:
            out.append((key, index, index))
    return out


def agent_lines(result: CallResult) -> list[TranscriptLine]:
    return [line for line in result.record.transcript if line.speaker == "agent"]


async def call(
    tmp_path: Path,
    turns: list[dict[str, Any]],
    caller: NDArray[np.int16],
    feedback: ToolFeedback,
    handler: Any,
    *,
    tail_s: float,
    recorder: Recorder | None = None,
) -> CallResult:
    return await run_file_call(
        caller,
        leg_rate=8000,
        options=BackendOptions(
            behaviour="script", script_path=script(tmp_path, *turns), realtime_factor=8.0
        ),
        tail_s=tail_s,
        session_class=WatchedSession,
        profile=CallProfile(tool_feedback=feedback),
        tools=tools_with(handler),
        recorder=recorder,
    )


async def test_hold_tone_fills_the_wait_and_gives_way_to_the_answer(tmp_path: Path) -> None:
    recorder = Recorder()
    result = await call(
        tmp_path,
        [LOOKUP, ANSWER],
        np.concatenate([noise_burst(8000, 800, seed=1), silence(8000, 600)]),
        ToolFeedback("hold", HoldAudio.tone(), after_ms=400),
        sleeping(1.0),  # wall time: four seconds of the fast test clock
        tail_s=8.0,
        recorder=recorder,
    )
    session = result.session
    assert isinstance(session, WatchedSession)
    # The outputs, then exactly one response.create, which the backend took at once.
    assert [kind for kind, _ in session.log if kind != "done"] == ["output", "create"]
    stats = result.backend.stats
    assert (stats.response_creates, stats.early_response_creates) == (1, 0)
    sent = result.leg.sent
    (lookup, hold, answer) = runs(sent)
    assert lookup[0] != "hold" and hold[0] == "hold" and answer[0] not in ("hold", lookup[0])
    # The hold starts after 400 ms of quiet, lasts while the tool runs, and the answer's
    # first frame follows its last one.
    assert hold[1] - lookup[2] - 1 == 20
    assert hold[2] - hold[1] > 100
    assert answer[1] == hold[2] + 1
    last = sent[hold[2]].pcm
    assert last[-1] == 0 and np.abs(last[-20:]).max() < np.abs(last[:20]).max() / 4
    # What the caller heard is in the recording, frame for frame.
    for index in range(hold[1], hold[2] + 1):
        recorded = recorder.agent[index]
        assert recorded is not None and np.array_equal(recorded, sent[index].pcm)
    # The transcript marks the hold where it was heard; no model item was truncated.
    lines = agent_lines(result)
    assert [line.text for line in lines] == ["Let me look that up.", "[hold]", "It is free."]
    assert (lines[1].start_ms, lines[1].end_ms) == (hold[1] * 20, (hold[2] + 1) * 20)
    assert result.record.truncates == 0 and stats.truncates_accepted == 0


async def test_a_caller_who_talks_over_the_hold_stops_it_and_is_answered(tmp_path: Path) -> None:
    caller = np.concatenate(
        [
            noise_burst(8000, 800, seed=4),
            silence(8000, 2400),  # the hold is playing by the end of this
            noise_burst(8000, 700, seed=5),
            silence(8000, 600),
        ]
    )
    result = await call(
        tmp_path,
        [LOOKUP, {"say": "Yes, still here.", "tone_ms": 300}, ANSWER],
        caller,
        ToolFeedback("hold", HoldAudio.tone(), after_ms=400),
        sleeping(1.6),
        tail_s=6.0,
    )
    lines = agent_lines(result)
    holds = [line for line in lines if line.text == "[hold]"]
    assert len(holds) == 1, lines  # stopped once, and not back in that turn
    second = [line for line in result.record.transcript if line.speaker == "caller"][1]
    # Stopped with the next frame after the caller started (one frame of fade).
    assert 0 < holds[0].end_ms - second.start_ms <= 40
    texts = [line.text for line in lines]
    assert texts.index("[hold]") < texts.index("Yes, still here.") < texts.index("It is free.")
    assert result.record.truncates == 0
    assert result.backend.stats.rejected_truncates == 0


async def filler_call(
    tmp_path: Path,
    turns: list[dict[str, Any]],
    caller: NDArray[np.int16],
    *,
    after_filler_s: float,
    realtime_factor: float,
    tail_s: float,
) -> tuple[CallResult, WatchedSession]:
    """A call whose tool answers `after_filler_s` after the filler was asked for."""
    holder: list[WatchedSession] = []

    async def lookup(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        await holder[0].filler_asked.wait()
        await asyncio.sleep(after_filler_s)
        return {"free": True}

    class Session(WatchedSession):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            holder.append(self)

    result = await run_file_call(
        caller,
        leg_rate=8000,
        options=BackendOptions(
            behaviour="script",
            script_path=script(tmp_path, *turns),
            realtime_factor=realtime_factor,
        ),
        tail_s=tail_s,
        session_class=Session,
        profile=CallProfile(
            tool_feedback=ToolFeedback("model", after_ms=400, instructions=FILLER_WORDS)
        ),
        tools=tools_with(lookup),
    )
    return result, holder[0]


FILLER = {"say": "One moment, please.", "tone_ms": 2500}


@pytest.mark.parametrize(
    ("after_filler_s", "realtime_factor"),
    [
        (0.05, 4.0),  # the filler is still streaming when the result comes
        (0.3, 20.0),  # it has streamed but is still playing
    ],
)
async def test_a_model_filler_then_exactly_one_answer_never_overlapping(
    tmp_path: Path, after_filler_s: float, realtime_factor: float
) -> None:
    result, session = await filler_call(
        tmp_path,
        [LOOKUP, FILLER, ANSWER],
        np.concatenate([noise_burst(8000, 800, seed=2), silence(8000, 600)]),
        after_filler_s=after_filler_s,
        realtime_factor=realtime_factor,
        tail_s=8.0,
    )
    # The filler is asked before the outputs; the outputs wait for its end; then exactly
    # one create, which the backend took at once (no create while a response ran).
    assert [entry[0] for entry in session.log] == [
        "done",
        "create",
        "done",
        "output",
        "create",
        "done",
    ]
    assert session.log[1] == ("create", FILLER_WORDS)
    stats = result.backend.stats
    assert (stats.response_creates, stats.early_response_creates, stats.responses) == (2, 0, 3)
    # Heard in order, never overlapping; the filler's line is marked.
    texts = [line.text for line in agent_lines(result)]
    assert texts == ["Let me look that up.", "[filler] One moment, please.", "It is free."]
    items = [key for key, _, _ in runs(result.leg.sent)]
    assert len(items) == 3 and len(set(items)) == 3 and "hold" not in items
    assert result.record.truncates == 0


async def test_a_caller_who_talks_over_the_model_filler_cuts_it_by_the_one_rule(
    tmp_path: Path,
) -> None:
    caller = np.concatenate(
        [
            noise_burst(8000, 800, seed=6),
            silence(8000, 2200),  # the filler is being spoken by the end of this
            noise_burst(8000, 600, seed=7),
            silence(8000, 600),
        ]
    )
    result, session = await filler_call(
        tmp_path,
        [LOOKUP, FILLER, {"say": "Yes, still here.", "tone_ms": 300}, ANSWER],
        caller,
        after_filler_s=1.2,
        realtime_factor=4.0,
        tail_s=6.0,
    )
    # The filler was cut where the caller stopped hearing it, never past what was sent.
    stats = result.backend.stats
    assert (result.record.truncates, stats.truncates_accepted, stats.rejected_truncates) == (
        1,
        1,
        0,
    )
    (truncation,) = stats.truncations
    assert 0 < truncation.audio_end_ms <= truncation.sent_ms
    lines = agent_lines(result)
    cut = [line for line in lines if line.truncated]
    assert len(cut) == 1 and cut[0].text.startswith("[filler] ") and cut[0].text.endswith("…")
    texts = [line.text for line in lines]
    assert texts[-2:] == ["Yes, still here.", "It is free."]
    # Still exactly one create after the outputs, and none while a response ran.
    after_output = session.log[[kind for kind, _ in session.log].index("output") :]
    assert [kind for kind, _ in after_output if kind != "done"] == ["output", "create"]
    assert stats.early_response_creates == 0


async def test_a_tool_past_the_longest_wait_is_reported_timed_out(tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        result = await call(
            tmp_path,
            [LOOKUP, {"say": "Sorry, the system is slow today.", "tone_ms": 400}],
            np.concatenate([noise_burst(8000, 800, seed=3), silence(8000, 600)]),
            ToolFeedback(timeout_ms=1500),
            sleeping(1.0),  # four seconds of the test clock: far past 1.5 s
            tail_s=6.0,
        )
    session = result.session
    assert isinstance(session, WatchedSession)
    outputs = [text for kind, text in session.log if kind == "output"]
    assert len(outputs) == 1
    assert "did not answer within 1.5 s" in json.loads(outputs[0])["error"]
    assert [kind for kind, _ in session.log if kind != "done"] == ["output", "create"]
    (timed_out,) = result.record.tool_results
    assert not timed_out.ok and timed_out.error == "no result within 1.5 s (tool_timeout_s)"
    texts = [line.text for line in agent_lines(result)]
    assert texts[-1] == "Sorry, the system is slow today."
    events = [entry["event"] for entry in logs]
    assert events.count("tool_timed_out") == 1
    assert events.count("tool_result_discarded") == 1
    assert result.backend.stats.function_outputs == 1
