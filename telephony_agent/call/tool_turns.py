"""A tool turn, from the model's calls to the one response after their outputs, and
what the caller hears while the tools run.

Why its own piece: a tool may take seconds, and a phone line that goes silent for
seconds sounds dead. Filling that silence touches the conversation (a spoken filler is
a response of its own), the media (hold audio is frames that are not model audio) and
the clock (a wait threshold and a maximum wait), and each of those must keep the rules
the rest of the Call relies on: one `response.create` per tool turn, truncation by what
the caller heard of a model item, nothing on the 20 ms tick that waits on I/O.

The rules, in the order a turn lives them:

* The calls of one response run concurrently. Their outputs go to the model together,
  in the order the model made the calls, followed by exactly one `response.create`.
* Once a turn is running and the line has been quiet for `after_ms` (no agent audio
  queued or playing, no response being generated, the caller not speaking), the caller
  hears the profile's feedback:
  - `model`: one `response.create` with the filler instructions, sent *before* the
    outputs. Its item is an ordinary conversation item, so a barge-in cancels and
    truncates it by the one rule. The outputs wait until the filler's response is done:
    a filler generated after the result arrived could answer it, and the answer after
    it would be a second one. The filler's audio is queued before the answer's in the
    one playout queue, so they never overlap. Tool calls the filler response makes
    anyway are not run; they get an output saying so, in the same batch.
  - `recording`: played once, to its end (the answer waits behind it).
  - `hold`: looped while the tools run and until the answer's first frame is ready (or
    the answer's response ends without audio); one frame fades it out, and the answer
    follows on the next.
* Past `timeout_ms` since the turn began, every call without a result gets an output
  saying it timed out and the turn is answered; a result that comes later is logged
  and dropped.
* The caller speaking during feedback stops it (hold audio within one frame; the
  filler response is cancelled and truncated like any answer), and it does not come
  back in that turn. The caller is answered as usual.

All times are media time (the call clock, 20 ms a tick), like the records and the
recording.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from telephony_agent.audio.playout import Frame
from telephony_agent.call.hold import FRAME_MS, HoldPlayer, ToolFeedback
from telephony_agent.call.lines import Line
from telephony_agent.call.playback import AnyPlayback
from telephony_agent.call.profile import CallObserver
from telephony_agent.call.record import CallRecord
from telephony_agent.call.summary import tool_line
from telephony_agent.call.tools import ToolContext, ToolRegistry, ToolResult
from telephony_agent.call.transcript import TranscriptWriter
from telephony_agent.realtime.events import FunctionCall

__all__ = ["FILLER_START_MS", "ToolSession", "ToolTurns"]

log = structlog.get_logger(__name__)

#: A filler response that has not started this long after it was asked for is given up
#: on, so the tool outputs it holds back are never held for good.
FILLER_START_MS = 5000


class ToolSession(Protocol):
    """What a tool turn asks of the Realtime session (both only queue a frame)."""

    def create_response(self, instructions: str | None = None) -> None: ...

    def send_function_output(self, call_id: str, output: str) -> None: ...


@dataclass(eq=False)
class _Turn:
    calls: list[FunctionCall]
    started_ms: int
    started_at: float
    results: dict[int, ToolResult] = field(default_factory=dict)
    #: Calls a filler response made while this turn ran: answered "not run".
    extra: list[FunctionCall] = field(default_factory=list)
    #: Feedback (a filler or a recording, each once a turn) was given.
    fed: bool = False
    #: The caller spoke over the feedback: none again in this turn.
    hushed: bool = False

    @property
    def complete(self) -> bool:
        return len(self.results) == len(self.calls)


@dataclass
class _Filler:
    requested_ms: int
    response_id: str | None = None


def _error_output(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


class ToolTurns:
    """Every tool turn of one call, and the frames the caller hears while they run."""

    def __init__(
        self,
        *,
        feedback: ToolFeedback,
        session: ToolSession,
        tools: ToolRegistry,
        context: ToolContext,
        playback: AnyPlayback,
        lines: TranscriptWriter,
        record: CallRecord,
        observer: CallObserver | None,
        may_answer: Callable[[], bool],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
    ) -> None:
        self._feedback = feedback
        self._session = session
        self._tools = tools
        self._context = context
        self._playback = playback
        self._lines = lines
        self._record = record
        self._observer = observer
        self._may_answer = may_answer
        self._spawn = spawn
        self._turns: list[_Turn] = []
        self._filler: _Filler | None = None
        audio = feedback.audio
        self._player = (
            HoldPlayer(audio.at(playback.leg_rate), playback.leg_rate, loop=audio.loop)
            if audio is not None
            else None
        )
        self._label = "[hold]" if feedback.kind == "hold" else "[filler]"
        self._line_start_ms: int | None = None
        self._quiet_since: int | None = None
        self._caller_speaking = False
        #: Outputs were sent and their answer asked for; hold audio lasts until it plays.
        self._answer_pending = False

    # ------------------------------------------------------------------ state

    @property
    def busy(self) -> bool:
        """A tool is running, a filler is on its way, or hold audio is sounding."""
        return bool(self._turns) or self._filler is not None or self._sounding

    @property
    def _sounding(self) -> bool:
        return self._player is not None and self._player.sounding

    def is_filler(self, response_id: str) -> bool:
        """Whether `response_id` is the filler asked of the model (its line is marked)."""
        return self._filler is not None and self._filler.response_id == response_id

    # ------------------------------------------------------------------ events

    def response_created(self, response_id: str) -> None:
        filler = self._filler
        if filler is not None and filler.response_id is None:
            filler.response_id = response_id

    def response_done(self, response_id: str, calls: list[FunctionCall], now_ms: int) -> None:
        """A response ended; `calls` are its tool calls still to run (none if it was
        cancelled or failed)."""
        filler = self._filler
        if filler is not None and filler.response_id == response_id:
            self._filler = None
            if calls:
                self._not_run(calls)
            self._deliver_ready()
            return
        self._answer_pending = False
        if calls:
            self._start(calls, now_ms)

    def caller_started(self) -> None:
        """The caller speaks: feedback stops at once and does not come back this turn."""
        self._caller_speaking = True
        self._quiet_since = None
        self._answer_pending = False
        if self._sounding or self._filler is not None:
            for turn in self._turns:
                turn.hushed = True
            if self._player is not None and self._player.sounding:
                self._player.stop()
                log.info("tool_feedback_interrupted", kind=self._feedback.kind)

    def caller_stopped(self) -> None:
        self._caller_speaking = False

    # ------------------------------------------------------------------ the tick

    def next_frame(self, now_ms: int, response_active: bool) -> Frame:
        """The frame the caller hears next: hold or filler audio, else agent speech."""
        if self._turns or self._filler is not None:
            self._advance(now_ms, response_active)
        player = self._player
        if player is None or not player.sounding:
            return self._playback.pop_frame()
        answered = self._playback.buffer.ready or not (self._turns or self._answer_pending)
        if player.loop and not player.stopping and answered:
            player.stop()
        pcm = player.frame()
        assert pcm is not None  # it was sounding
        if not player.sounding:
            self._end_line(now_ms + FRAME_MS)
        return Frame(pcm, None, True)

    def close(self, now_ms: int) -> None:
        """The call ends: a sound still playing gets its transcript line."""
        if self._sounding:
            self._end_line(now_ms)

    def _advance(self, now_ms: int, response_active: bool) -> None:
        for turn in list(self._turns):
            if not turn.complete and now_ms - turn.started_ms >= self._feedback.timeout_ms:
                self._time_out(turn)
        filler = self._filler
        if (
            filler is not None
            and filler.response_id is None
            and now_ms - filler.requested_ms >= FILLER_START_MS
        ):
            log.warning("tool_filler_not_started", waited_ms=now_ms - filler.requested_ms)
            self._filler = None
        self._deliver_ready()
        self._maybe_feedback(now_ms, response_active)

    def _maybe_feedback(self, now_ms: int, response_active: bool) -> None:
        """Start the feedback once the line has been quiet long enough while a tool runs."""
        kind = self._feedback.kind
        waiting = [turn for turn in self._turns if not turn.hushed]
        quiet = not (
            response_active
            or self._caller_speaking
            or self._filler is not None
            or self._sounding
            or self._playback.buffer.is_playing
        )
        if kind == "none" or not waiting or not quiet:
            self._quiet_since = None
            return
        if self._quiet_since is None:
            self._quiet_since = now_ms
        if now_ms - self._quiet_since < self._feedback.after_ms:
            return
        self._quiet_since = None
        if kind == "hold":
            self._start_sound(now_ms)  # hold audio may come back after other speech
            return
        fresh = [turn for turn in waiting if not turn.fed]
        if not fresh or not self._may_answer():
            return
        for turn in fresh:
            turn.fed = True
        if kind == "model":
            self._filler = _Filler(now_ms)
            self._session.create_response(self._feedback.instructions)
            log.info("tool_feedback", kind=kind)
        else:
            self._start_sound(now_ms)

    def _start_sound(self, now_ms: int) -> None:
        assert self._player is not None
        self._player.start()
        self._line_start_ms = now_ms
        log.info("tool_feedback", kind=self._feedback.kind)

    def _end_line(self, end_ms: int) -> None:
        start = self._line_start_ms if self._line_start_ms is not None else end_ms
        self._line_start_ms = None
        end_ms = max(start, end_ms)
        log.info("tool_feedback_ended", kind=self._feedback.kind, duration_ms=end_ms - start)
        self._lines.emit([Line("agent", self._label, start, end_ms)])

    # ------------------------------------------------------------------ the tools

    def _start(self, calls: list[FunctionCall], now_ms: int) -> None:
        turn = _Turn(list(calls), now_ms, time.time())
        self._turns.append(turn)
        self._quiet_since = None
        for index, call in enumerate(turn.calls):
            self._spawn(self._run(turn, index, call))

    async def _run(self, turn: _Turn, index: int, call: FunctionCall) -> None:
        result = await self._tools.invoke(call.name, call.arguments, self._context)
        if index in turn.results:  # it was given up on at the maximum wait
            log.warning(
                "tool_result_discarded",
                tool=result.name,
                ok=result.ok,
                duration_ms=round(result.duration_ms, 1),
            )
            return
        turn.results[index] = result
        self._deliver_ready()

    def _time_out(self, turn: _Turn) -> None:
        seconds = self._feedback.timeout_ms / 1000
        for index, call in enumerate(turn.calls):
            if index in turn.results:
                continue
            log.warning("tool_timed_out", tool=call.name, after_s=seconds)
            turn.results[index] = ToolResult(
                name=call.name,
                arguments=call.arguments,
                output=_error_output(
                    f"{call.name} did not answer within {seconds:g} s and was given up on; "
                    "its result will not come"
                ),
                ok=False,
                error=f"no result within {seconds:g} s (tool_timeout_s)",
                duration_ms=float(self._feedback.timeout_ms),
                started_at=turn.started_at,
            )

    def _deliver_ready(self) -> None:
        """Send every finished turn's outputs and ask for its answer, unless a filler
        response is still on its way (then they go when it is done)."""
        if self._filler is not None:
            return
        for turn in [t for t in self._turns if t.complete]:
            self._turns.remove(turn)
            for index, call in enumerate(turn.calls):
                result = turn.results[index]
                self._session.send_function_output(call.call_id, result.output)
                self._report(result)
            self._answer_not_run(turn.extra)
            if self._may_answer():
                self._session.create_response()
                self._answer_pending = True

    def _not_run(self, calls: list[FunctionCall]) -> None:
        """Calls a filler response made: their outputs join the running turn's, or go
        now when no turn is running (no response is asked for them)."""
        if self._turns:
            self._turns[-1].extra.extend(calls)
        else:
            self._answer_not_run(calls)

    def _answer_not_run(self, calls: list[FunctionCall]) -> None:
        for call in calls:
            result = ToolResult(
                name=call.name,
                arguments=call.arguments,
                output=_error_output(
                    f"{call.name} was not run: it was called while another tool was still running"
                ),
                ok=False,
                error="not run: called by a filler response",
                duration_ms=0.0,
                started_at=time.time(),
            )
            self._session.send_function_output(call.call_id, result.output)
            self._report(result)

    def _report(self, result: ToolResult) -> None:
        self._record.tool_results.append(result)
        self._lines.say("tool", tool_line(result))
        if self._observer is not None:
            self._observer.tool_result(result)
