"""A tool turn's rules on a hand-driven clock: when feedback starts, what the model is
sent and in which order, the maximum wait, and a caller who speaks over the hold."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from telephony_agent.call.hold import HoldAudio, ToolFeedback
from telephony_agent.call.playback import Playback
from telephony_agent.call.record import CallRecord, TranscriptLine
from telephony_agent.call.tool_turns import FILLER_START_MS, ToolTurns
from telephony_agent.call.tools import Tool, ToolContext, ToolRegistry, ToolResult
from telephony_agent.call.transcript import TranscriptWriter
from telephony_agent.media.leg import TransferResult
from telephony_agent.realtime.events import FunctionCall
from telephony_agent.realtime.session_config import ToolSpec

LEG_RATE = 8000
FRAME = 20


@dataclass
class FakeSession:
    """Keeps what the turn asked of the session, in order."""

    sent: list[tuple[str, str]] = field(default_factory=list)

    def create_response(self, instructions: str | None = None) -> None:
        self.sent.append(("create", instructions or ""))

    def send_function_output(self, call_id: str, output: str) -> None:
        self.sent.append(("output", f"{call_id}={output}"))


class Context:
    call_id = "c1"

    def request_hangup(self, reason: str) -> None:
        raise AssertionError("not used")

    async def transfer(self, target: str) -> TransferResult:
        raise AssertionError("not used")

    def send_dtmf(self, digits: str) -> bool:
        raise AssertionError("not used")


class Rig:
    """One ToolTurns with a tool that answers when the test says so."""

    def __init__(self, feedback: ToolFeedback, *, timeout_s: float = 60.0) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.session = FakeSession()
        self.lines: list[TranscriptLine] = []
        self.now_ms = 0
        self.record = CallRecord("c1", "file", "local", 0.0)
        self.playback = Playback(24000, LEG_RATE, preroll_ms=80)
        self.answering = True
        registry = ToolRegistry()
        registry.register(Tool(ToolSpec("lookup", "Looks slowly."), self._lookup, timeout_s))
        context: ToolContext = Context()
        self.turns = ToolTurns(
            feedback=feedback,
            session=self.session,
            tools=registry,
            context=context,
            playback=self.playback,
            lines=TranscriptWriter(self.lines, lambda: self.now_ms, None),
            record=self.record,
            observer=None,
            may_answer=lambda: self.answering,
            spawn=asyncio.ensure_future,
        )

    async def _lookup(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        gate = self.gates.setdefault(str(args.get("key", "")), asyncio.Event())
        await gate.wait()
        return {"found": args.get("key")}

    def calls(self, response_id: str, *keys: str) -> list[FunctionCall]:
        return [
            FunctionCall(
                response_id, f"item-{key}", f"call-{key}", "lookup", json.dumps({"key": key})
            )
            for key in keys
        ]

    async def answer(self, key: str) -> None:
        self.gates.setdefault(key, asyncio.Event()).set()
        for _ in range(5):  # let the tool task finish and report
            await asyncio.sleep(0)

    def tick(self, *, response_active: bool = False) -> bool:
        """One 20 ms tick; True when the frame was hold or filler audio."""
        frame = self.turns.next_frame(self.now_ms, response_active)
        self.now_ms += FRAME
        return frame.speech and frame.item_id is None

    def ticks(self, count: int, *, response_active: bool = False) -> list[bool]:
        return [self.tick(response_active=response_active) for _ in range(count)]


def hold(after_ms: int = 400, timeout_ms: int = 30_000) -> ToolFeedback:
    return ToolFeedback("hold", HoldAudio.tone(), after_ms=after_ms, timeout_ms=timeout_ms)


async def test_hold_starts_after_the_quiet_threshold_and_not_before() -> None:
    rig = Rig(hold(after_ms=400))
    rig.turns.response_done("r1", rig.calls("r1", "a"), rig.now_ms)
    # The first tick with a running tool starts the quiet count; 400 ms later, the hold.
    assert rig.ticks(21) == [False] * 20 + [True]
    assert rig.turns.busy
    assert rig.session.sent == []


async def test_agent_speech_still_playing_delays_the_hold() -> None:
    rig = Rig(hold(after_ms=200))
    rig.playback.push_delta("spoken", np.full(24000 * 300 // 1000, 3000, np.int16).tobytes())
    rig.playback.end_item()
    rig.turns.response_done("r1", rig.calls("r1", "a"), rig.now_ms)
    heard = rig.ticks(30)
    # 300 ms of the agent's own words play out first (15 frames), then 200 ms of quiet.
    assert heard.index(True) == 15 + 10


async def test_the_outputs_then_exactly_one_create_and_the_hold_gives_way_to_the_answer() -> None:
    rig = Rig(hold(after_ms=100))
    rig.turns.response_done("r1", rig.calls("r1", "a", "b"), rig.now_ms)
    rig.ticks(10)
    await rig.answer("b")
    assert rig.session.sent == []  # one of two: nothing yet
    await rig.answer("a")
    assert [kind for kind, _ in rig.session.sent] == ["output", "output", "create"]
    assert rig.session.sent[0][1].startswith("call-a=")  # in the order the model called
    assert len(rig.record.tool_results) == 2
    # The hold goes on until the answer's audio is ready, then one faded frame, then it.
    assert rig.ticks(5) == [True] * 5
    rig.turns.response_created("r2")
    rig.playback.push_delta("answer", np.full(24000 * 3 // 10, 3000, np.int16).tobytes())
    assert rig.playback.buffer.ready
    assert rig.tick(response_active=True)  # the fade-out frame
    frame = rig.turns.next_frame(rig.now_ms, True)
    assert frame.speech and frame.item_id == "answer"
    hold_lines = [line for line in rig.lines if line.text == "[hold]"]
    assert len(hold_lines) == 1 and hold_lines[0].end_ms - hold_lines[0].start_ms == 11 * FRAME
    assert not rig.turns.busy


async def test_the_maximum_wait_tells_the_model_and_drops_the_late_result() -> None:
    rig = Rig(hold(after_ms=100, timeout_ms=1000))
    rig.turns.response_done("r1", rig.calls("r1", "a"), rig.now_ms)
    rig.ticks(50)
    assert rig.session.sent == []
    rig.tick()  # 1000 ms
    kinds = [kind for kind, _ in rig.session.sent]
    assert kinds == ["output", "create"]
    output = json.loads(rig.session.sent[0][1].split("=", 1)[1])
    assert "did not answer within 1 s" in output["error"]
    (result,) = rig.record.tool_results
    assert (result.ok, result.error) == (False, "no result within 1 s (tool_timeout_s)")
    await rig.answer("a")
    assert [kind for kind, _ in rig.session.sent] == kinds  # the late result went nowhere
    assert len(rig.record.tool_results) == 1


async def test_a_caller_who_speaks_over_the_hold_stops_it_at_once_for_the_turn() -> None:
    rig = Rig(hold(after_ms=100))
    rig.turns.response_done("r1", rig.calls("r1", "a"), rig.now_ms)
    assert rig.ticks(8)[-1]
    rig.turns.caller_started()
    assert rig.tick()  # the faded last frame
    assert not rig.tick()
    rig.turns.caller_stopped()
    assert rig.ticks(50) == [False] * 50  # not again in this turn
    await rig.answer("a")
    assert [kind for kind, _ in rig.session.sent] == ["output", "create"]
    # The next turn gets its hold again.
    rig.turns.response_done("r2", rig.calls("r2", "b"), rig.now_ms)
    assert any(rig.ticks(10))


async def test_a_model_filler_comes_before_the_outputs_which_wait_for_its_end() -> None:
    rig = Rig(ToolFeedback("model", after_ms=200, instructions="Say: one moment."))
    rig.turns.response_done("r1", rig.calls("r1", "a"), rig.now_ms)
    rig.ticks(11)
    assert rig.session.sent == [("create", "Say: one moment.")]
    rig.ticks(20)
    assert len(rig.session.sent) == 1  # once a turn
    rig.turns.response_created("filler")
    assert rig.turns.is_filler("filler")
    await rig.answer("a")  # the result arrives while the filler is being spoken
    assert len(rig.session.sent) == 1
    rig.ticks(3, response_active=True)
    rig.turns.response_done("filler", [], rig.now_ms)
    assert rig.session.sent[1:] == [("output", 'call-a={"found": "a"}'), ("create", "")]


async def test_tool_calls_a_filler_makes_are_answered_not_run_with_the_turn() -> None:
    rig = Rig(ToolFeedback("model", after_ms=100))
    rig.turns.response_done("r1", rig.calls("r1", "a"), rig.now_ms)
    rig.ticks(6)
    rig.turns.response_created("filler")
    rig.turns.response_done("filler", rig.calls("filler", "again"), rig.now_ms)
    await rig.answer("a")
    kinds = [kind for kind, _ in rig.session.sent]
    assert kinds == ["create", "output", "output", "create"]
    assert "call-again=" in rig.session.sent[2][1] and "was not run" in rig.session.sent[2][1]
    assert "again" not in rig.gates  # it never ran


async def test_a_filler_that_never_starts_does_not_hold_the_outputs_back_for_good() -> None:
    rig = Rig(ToolFeedback("model", after_ms=100))
    rig.turns.response_done("r1", rig.calls("r1", "a"), rig.now_ms)
    rig.ticks(6)
    await rig.answer("a")
    assert len(rig.session.sent) == 1
    rig.ticks(FILLER_START_MS // FRAME)
    assert [kind for kind, _ in rig.session.sent] == ["create", "output", "create"]


async def test_a_recording_is_played_once_per_turn_and_none_while_hanging_up() -> None:
    recording = HoldAudio(np.full(4800, 2000, np.int16), 48000, loop=False)  # 100 ms
    rig = Rig(ToolFeedback("recording", recording, after_ms=100))
    rig.turns.response_done("r1", rig.calls("r1", "a"), rig.now_ms)
    heard = rig.ticks(40)
    assert heard.count(True) == 5 and heard.index(True) == 5
    assert [line.text for line in rig.lines] == ["[filler]"]
    await rig.answer("a")
    rig.answering = False
    rig.turns.response_done("r2", rig.calls("r2", "b"), rig.now_ms)
    assert rig.ticks(40) == [False] * 40
    await rig.answer("b")
    assert [kind for kind, _ in rig.session.sent] == ["output", "create", "output"]


async def test_results_of_a_tool_that_fails_are_sent_like_any_other() -> None:
    rig = Rig(ToolFeedback())
    registry_result: list[ToolResult] = rig.record.tool_results
    rig.turns.response_done("r1", [FunctionCall("r1", "i", "call-x", "missing", "{}")], 0)
    for _ in range(5):
        await asyncio.sleep(0)
    assert [kind for kind, _ in rig.session.sent] == ["output", "create"]
    assert registry_result[0].error == "unknown tool"
