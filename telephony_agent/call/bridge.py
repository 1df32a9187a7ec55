"""The Call: couples one media leg with one Realtime session, in real time.

Data walks one way in and one way out, along the call's `MediaPath`:

* in: leg frame → inbound resampler (leg rate → 24 kHz), or the G.711 bytes as they
  came (passthrough) → `session.append_audio`;
* out: audio delta → `Playback` (decode, resample, queue) or `G711Playback` (queue the
  bytes) → one frame per media-clock tick → `leg.send_frame`.

Barge-in follows the protocol notes (§3): `barge_in.py` decides whether the caller's
speech interrupts; the cut (`interruption.py`) flushes playout at once, cancels an
active response, truncates the interrupted item at the milliseconds actually played
(clamped to what was received, skipped at 0) and drops every later delta of the
interrupted response. Tool calls are collected while a response runs and handed to
`ToolTurns` after its `response.done`: it runs them, fills the wait with the profile's
filler or hold audio, and answers with their outputs followed by exactly one
`response.create`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from telephony_agent.audio.clock import MediaClock
from telephony_agent.audio.playout import Frame
from telephony_agent.call.barge_in import Decision
from telephony_agent.call.caller_events import CallerEvents
from telephony_agent.call.greeting import Greeting
from telephony_agent.call.idle import IdleWatch
from telephony_agent.call.interruption import CutTracker
from telephony_agent.call.keypad import KeypadEntry, KeypadInput
from telephony_agent.call.lines import AgentLines, CallerLines
from telephony_agent.call.link_loss import cut_answer
from telephony_agent.call.media_path import MODEL_INPUT_RATE, MediaPath
from telephony_agent.call.opening import OpeningActions, OpeningDriver, OutboundOpening
from telephony_agent.call.profile import (
    GREETING_AUDIO_ITEM,
    CallObserver,
    CallProfile,
    FrameRecorder,
    RecordingFeed,
)
from telephony_agent.call.record import BargeIn, CallRecord, TranscriptLine, TurnLatency
from telephony_agent.call.summary import ended_fields
from telephony_agent.call.tool_turns import ToolTurns
from telephony_agent.call.tools import ToolRegistry
from telephony_agent.call.transcript import TranscriptWriter
from telephony_agent.call.turn_guard import TurnGuard
from telephony_agent.call.turns import TurnTimer
from telephony_agent.logs import bind_call
from telephony_agent.media.leg import (
    AudioIn,
    DtmfIn,
    LegEnded,
    LegEvent,
    MediaLeg,
    TransferResult,
)
from telephony_agent.realtime.client import RealtimeSession
from telephony_agent.realtime.events import (
    LINK_LOST,
    AssistantTranscriptDelta,
    AssistantTranscriptDone,
    AudioDelta,
    AudioDone,
    FunctionCall,
    InputTranscript,
    ResponseCreated,
    ResponseDone,
    ServerError,
    ServerEvent,
    SessionClosed,
    SessionReconnected,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
)

__all__ = [
    "GREETING_AUDIO_ITEM",
    "MODEL_INPUT_RATE",
    "Call",
    "CallObserver",
    "CallProfile",
    "FrameRecorder",
]

log = structlog.get_logger(__name__)

FRAME_MS = 20


TranscriptCallback = Callable[[TranscriptLine], None]


class Call:
    """One live call. Create it with a connected session, then `await call.run()`."""

    def __init__(
        self,
        *,
        leg: MediaLeg,
        session: RealtimeSession,
        clock: MediaClock,
        tools: ToolRegistry,
        profile: CallProfile | None = None,
        call_id: str | None = None,
        provider: str = "",
        on_transcript: TranscriptCallback | None = None,
        observer: CallObserver | None = None,
        recorder: FrameRecorder | None = None,
    ) -> None:
        self.leg = leg
        self._caller_events = CallerEvents(
            leg,
            self._leg_event,
            failed=lambda: self._end("media_error", "system"),
            exhausted=lambda: self._end("caller_hangup", "caller"),
        )
        self.session = session
        self.clock = clock
        self.tools = tools
        self.profile = profile or CallProfile()
        self.call_id = call_id or uuid.uuid4().hex[:12]
        self._observer = observer
        #: Gets one (caller, agent) frame pair per tick when the call is recorded.
        self._recording = RecordingFeed(recorder) if recorder is not None else None
        self._agent_lines = AgentLines()
        self._caller_lines = CallerLines()
        self.record = CallRecord(
            call_id=self.call_id, leg_codec=leg.codec, provider=provider, started_at=time.time()
        )
        self._lines = TranscriptWriter(self.record.transcript, self._now_ms, on_transcript)
        #: The conversions both ways (or none: G.711 passthrough).
        self.media = MediaPath(
            leg,
            session.audio_format,
            session.output_rate,
            preroll_ms=self.profile.playout_preroll_ms,
        )
        self.playback = self.media.playback
        # Response state, driven by server events.
        self._response_id: str | None = None
        self._response_active = False
        # Barge-in: whether speech interrupts, and the exact cut's bookkeeping. The
        # guard judges speech over the agent when the server was asked not to interrupt;
        # when it was asked not to answer either, the Call answers each real turn once.
        vad = session.config.vad
        self._guard = TurnGuard(
            self.profile.turns,
            leg.sample_rate,
            guarded=vad is not None and not vad.interrupt_response,
            transcription=session.config.transcription_model is not None,
        )
        self._answers_turns = vad is not None and not vad.create_response
        self._stopped_at = (0.0, 0)
        self._cuts = CutTracker()
        self._pending_calls: dict[str, list[FunctionCall]] = {}
        self._consecutive_failures = 0
        # Latency of the current turn.
        self._turns = TurnTimer()
        # Ending.
        self._hangup_reason: str | None = None
        self._drained = asyncio.Event()
        self._ended = asyncio.Event()
        self._end_reason = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._keypad = KeypadInput(
            KeypadEntry(
                self.profile.dtmf_terminator,
                self.profile.dtmf_max_digits,
                self.profile.dtmf_message,
            ),
            inter_digit_s=self.profile.dtmf_inter_digit_s,
            send=self._send_keypad_entry,
            spawn=self._spawn,
        )
        self._frames_sent = 0
        self._downlink_probe: tuple[str, float] | None = None
        #: A response to ask for once the active one is done (keypad entry mid-speech).
        self._create_after_response = False
        self._greeting = Greeting(self.profile, self.playback, session, self._lines)
        #: Calls we placed: wait for the callee, answering-machine detection.
        opening = self.profile.opening
        self._opening = (
            OpeningDriver(OutboundOpening(opening, leg.sample_rate), self._opening_actions())
            if opening
            else None
        )
        #: Set by a voicemail message: the call ends once that response is done.
        self._end_after_response: str | None = None
        # A rollover waits until the caller has heard everything queued.
        session.watch_playout(lambda: self.playback.buffer.is_playing)
        idle_s = self.profile.idle_reprompt_s
        self._idle = (
            IdleWatch(int(idle_s * 1000), self.profile.idle_max_reprompts) if idle_s else None
        )
        self._idle_goodbye = False
        self._tool_turns = ToolTurns(
            feedback=self.profile.tool_feedback,
            session=session,
            tools=tools,
            context=self,
            playback=self.playback,
            lines=self._lines,
            record=self.record,
            observer=observer,
            may_answer=lambda: self._hangup_reason is None and not self._ended.is_set(),
            spawn=self._spawn,
        )

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> CallRecord:
        """Run until either side ends the call; always returns the record, never raises."""
        bind_call(self.call_id)
        log.info(
            "call_started",
            leg=self.leg.codec,
            leg_rate=self.leg.sample_rate,
            model_rate=self.session.output_rate,
            audio_path=self.media.kind,
        )
        subscription = self.clock.subscribe(self._on_tick)
        uplink = asyncio.create_task(self._caller_events.run(), name=f"uplink-{self.call_id}")
        downlink = asyncio.create_task(self._downlink(), name=f"downlink-{self.call_id}")
        if self._opening is None:
            self._greeting.start()
        try:
            timeout = self.profile.max_duration_s
            try:
                async with asyncio.timeout(timeout):
                    await self._ended.wait()
            except TimeoutError:
                self._end("max_duration", "timeout")
                await self._drain_then(self.profile.hangup_drain_timeout_s)
        finally:
            subscription.cancel()
            self._caller_events.stop()
            now_ms = self._now_ms()
            self._lines.emit(self._agent_lines.flush(now_ms))
            self._lines.emit(self._caller_lines.flush(now_ms))
            self._tool_turns.close(now_ms)
            for task in (uplink, downlink, *self._tasks):
                task.cancel()
            for task in (uplink, downlink, *self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await self.session.close()
            if self._end_reason != "caller_hangup":
                with contextlib.suppress(Exception):
                    await self.leg.hangup(self._end_reason)
        self.record.ended_at = time.time()
        self.record.end_reason = self._end_reason
        self.record.uplink_latency = self.session.uplink_latency
        self.record.underruns = self.playback.buffer.underruns
        log.info("call_ended", **ended_fields(self.record))
        return self.record

    def _end(self, reason: str, by: str) -> None:
        """End the call; `by` says who ended it (caller, agent, timeout, provider,
        transfer, system), kept in the record next to the reason."""
        if not self._ended.is_set():
            self._end_reason = reason
            self.record.ended_by = by
            self._ended.set()

    async def _drain_then(self, timeout_s: float) -> None:
        """Let queued agent speech reach the caller before hanging up."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.playback.buffer.is_playing or self._response_active:
                    self._drained.clear()
                    await self._drained.wait()

    # ------------------------------------------------------------------ uplink

    def _leg_event(self, event: LegEvent) -> bool:
        """Handle one caller event (see `caller_events.py`); True once the leg ended."""
        if isinstance(event, AudioIn):
            if self._recording is not None:
                self._recording.caller(event.pcm)
            if self._opening is not None:
                self._opening.opening.audio(event.pcm)
            self._apply(self._guard.heard(event.pcm, agent_busy=self._agent_busy()))
            audio = self.media.uplink(event)
            if audio:
                self.session.append_audio(audio, event.received_at)
        elif isinstance(event, DtmfIn):
            self._on_dtmf(event)
        elif isinstance(event, LegEnded):
            log.info("leg_ended", reason=event.reason)
            # A hang-up by the caller is the normal end; anything else (media timeout,
            # shutdown, an unacknowledged answer) keeps its own name, and the leg is
            # then hung up from our side.
            normal = event.reason in ("caller_hangup", "file_finished", "closed")
            if normal:
                self._end("caller_hangup", "caller")
            else:
                self._end(event.reason, "system")
            return True
        return False

    def _on_dtmf(self, event: DtmfIn) -> None:
        """Collect keypad digits (`KeypadInput`); the entry goes to the model as one message."""
        self.record.dtmf += event.digit
        if self._idle is not None:
            self._idle.caller_pressed()
        self._lines.say("caller", f"[DTMF {event.digit}]")
        if self._observer is not None:
            self._observer.dtmf(self.record.dtmf)
        self._keypad.press(event.digit)

    def _send_keypad_entry(self, text: str) -> None:
        """One user message, then exactly one response.create — after the active
        response's `response.done` if one is running (a second create is an error)."""
        self.session.add_message("user", text)
        if self._response_active:
            self._create_after_response = True
        else:
            self.session.create_response()

    # ------------------------------------------------------------------ downlink

    async def _downlink(self) -> None:
        async for event in self.session.events():
            try:
                self._route(event)
            except Exception:  # one bad event must never drop the call
                log.exception("event_handling_failed", event=type(event).__name__)
            if isinstance(event, SessionClosed):
                break
        self._end(self._end_reason or "realtime_closed", "provider")

    def _route(self, event: ServerEvent) -> None:
        if isinstance(event, AudioDelta):
            self._on_audio_delta(event)
        elif isinstance(event, SpeechStarted):
            self._on_speech_started(event)
        elif isinstance(event, SpeechStopped):
            now_ms = self._now_ms()
            self._stopped_at = (time.monotonic(), now_ms)
            if self._idle is not None:
                self._idle.caller_stopped()
            self._tool_turns.caller_stopped()
            self._lines.emit(self._caller_lines.speech_stopped(event.item_id, now_ms))
            busy = self._agent_busy()
            self._apply(self._guard.speech_stopped(event.item_id, now_ms, agent_busy=busy))
        elif isinstance(event, ResponseCreated):
            self._response_id = event.response_id
            self._response_active = True
            self._tool_turns.response_created(event.response_id)
            if self._opening is not None and self._opening.opening.holds_responses:
                # Nobody may hear the model until we know who answered.
                self._cuts.discard_response(event.response_id)
                self.session.cancel_response()
        elif isinstance(event, AudioDone):
            if not self._cuts.is_stale(event.response_id, event.item_id):
                self.playback.end_item()
                playing = self.playback.buffer.is_playing
                self._lines.emit(self._agent_lines.audio_done(event.item_id, playing=playing))
        elif isinstance(event, AssistantTranscriptDelta):
            if not self._cuts.is_stale(event.response_id, event.item_id):
                self._agent_lines.text_delta(event.item_id, event.delta)
        elif isinstance(event, AssistantTranscriptDone):
            has_audio = self.playback.received_ms(event.item_id) > 0
            self._lines.emit(
                self._agent_lines.text_done(
                    event.item_id, event.text, has_audio=has_audio, now_ms=self._now_ms()
                )
            )
        elif isinstance(event, InputTranscript):
            if event.final and event.transcript:
                self._lines.emit(
                    self._caller_lines.transcript(event.item_id, event.transcript, self._now_ms())
                )
                self._apply(self._guard.transcript(event.item_id, event.transcript))
        elif isinstance(event, FunctionCall):
            self._pending_calls.setdefault(event.response_id, []).append(event)
        elif isinstance(event, ResponseDone):
            if event.reason == LINK_LOST and event.response_id == self._response_id:
                self._cut_at_link_loss(event.response_id)
            self._on_response_done(event)
        elif isinstance(event, SessionUpdated):
            if event.output_rate and event.output_rate != self.playback.model_rate:
                log.info("model_output_rate", rate=event.output_rate)
                self.playback.set_model_rate(event.output_rate)
        elif isinstance(event, ServerError):
            self.record.errors += 1
        elif isinstance(event, SessionReconnected):
            if event.rollover:  # planned, at a pause: nothing for the caller or the record
                self.record.rollovers += 1
            else:
                self.record.reconnects += 1
                self._lines.say("system", "[realtime session reconnected]")
        elif isinstance(event, SessionClosed):
            log.warning("realtime_session_closed", reason=event.reason)
            self._end(f"realtime_closed: {event.reason}", "provider")

    def _on_audio_delta(self, event: AudioDelta) -> None:
        new_item = not self._cuts.knows_item(event.item_id)
        if not self._cuts.accept_delta(event.response_id, event.item_id, bool(event.audio)):
            self.record.stale_deltas_dropped += 1
            return
        if not event.audio:
            return
        if new_item and not self.playback.buffer.is_playing:
            # The start of a talk spurt: time it from the websocket to the leg.
            self._downlink_probe = (event.item_id, event.received_at or time.monotonic())
        if self._tool_turns.is_filler(event.response_id):
            self._agent_lines.label(event.item_id, "[filler]")
        self._turns.delta(event.item_id, time.monotonic())
        self.playback.push_delta(event.item_id, event.audio)

    def _on_speech_started(self, event: SpeechStarted) -> None:
        self._caller_lines.speech_started(event.item_id, self._now_ms())
        self._apply(self._guard.speech_started(event.item_id, agent_busy=self._agent_busy()))

    def _agent_busy(self) -> bool:
        return self.playback.buffer.is_playing or self._response_active

    def _apply(self, decision: Decision) -> None:
        """Do what the barge-in guard decided (usually nothing)."""
        for action in decision.actions:
            if action == "duck":
                self.playback.duck(self.profile.turns.duck_db)
            elif action == "restore":
                self.playback.restore()
            elif action == "cut":
                self._on_caller_turn()
            elif action == "answer":
                self._turns.speech_stopped(*self._stopped_at)
                if self._answers_turns and self._hangup_reason is None:
                    self.session.create_response()
        if decision.ignored is not None:
            self.record.ignored_speech[decision.ignored] += 1
            log.info("speech_ignored", reason=decision.ignored)

    def _on_caller_turn(self) -> None:
        """The caller's speech is a real turn (not echo, not "mm-hm"): the caller is there,
        and the agent stops if it is speaking."""
        if self._opening is not None:
            self._opening.opening.callee_spoke()
        # A caller who talks over the greeting recording is answered, not greeted again.
        self._greeting.caller_spoke()
        self._tool_turns.caller_started()
        if self._idle is not None:
            self._idle.caller_started()
            self._idle_goodbye = False
        self._turns.speech_started()
        self.playback.restore()
        if self.playback.buffer.is_playing or self._response_active:
            self._cut(self._now_ms())

    def _cut(self, now_ms: int) -> None:
        """The exact cut (§3): flush, cancel, truncate at what was played, drop the rest."""
        cut = self._cuts.cut(
            self.playback, response_id=self._response_id, response_active=self._response_active
        )
        if cut.cancel:
            self.session.cancel_response()
            self.record.cancels += 1
        for item_id, played_ms in cut.truncates:
            self.session.truncate(item_id, played_ms)
            self.record.truncates += 1
        for item_id in cut.items:
            played = self.playback.played_ms(item_id)
            received = self.playback.received_ms(item_id)
            self._lines.emit(self._agent_lines.cut(item_id, played, received, now_ms))
        interruption = cut.interruption
        barge_in = BargeIn(
            self._frames_sent, cut.heard, interruption.played_ms, bool(cut.truncates), now_ms
        )
        self.record.barge_ins.append(barge_in)
        if self._observer is not None:
            self._observer.barge_in(barge_in)
        log.info(
            "barge_in",
            item_id=cut.heard,
            played_ms=interruption.played_ms,
            received_ms=interruption.received_ms,
            dropped_ms=interruption.dropped_ms,
        )

    def _cut_at_link_loss(self, response_id: str) -> None:
        """The connection died mid-answer: see `link_loss.py`. Nothing more of it plays."""
        items = self._cuts.lose_response(response_id)
        now_ms = self._now_ms()
        self._lines.emit(cut_answer(self.playback, self._agent_lines, self.session, items, now_ms))

    def _on_response_done(self, event: ResponseDone) -> None:
        rid = event.response_id
        self._cuts.response_done(rid)
        if rid == self._response_id:
            self._response_active = False
        stale = self._cuts.is_response_stale(rid)
        if not stale:
            self.playback.end_item()
        calls = self._pending_calls.pop(rid, [])
        if calls and (stale or event.status in ("cancelled", "failed")):
            reason = "response_failed" if event.status == "failed" else "response_cancelled"
            log.info("tool_calls_discarded", count=len(calls), reason=reason)
            calls = []
        self._tool_turns.response_done(rid, calls, self._now_ms())
        if event.status == "failed":
            self._consecutive_failures += 1
            self.record.errors += 1
            log.warning("response_failed", response_id=rid, error=event.error)
            if self._consecutive_failures >= self.profile.max_consecutive_failures:
                self._request_end("provider_failed", "provider")
            else:
                self.session.create_response(instructions=self.profile.fallback_instructions)
            return
        if event.status in ("completed", "incomplete"):
            self._consecutive_failures = 0
        if calls:
            self.record.tool_calls += len(calls)
            # The follow-up response after the tools also answers a pending keypad entry.
            self._create_after_response = False
        elif self._idle_goodbye and not stale:
            self._request_end("idle", "timeout")
        elif self._end_after_response is not None and not stale:
            self._request_end(self._end_after_response, "agent")
        elif self._create_after_response and rid == self._response_id:
            self._create_after_response = False
            if self._hangup_reason is None:
                self.session.create_response()
        self._wake_drain()

    # ------------------------------------------------------------------ media clock

    def _on_tick(self, _tick: int) -> None:
        frame: Frame = self._tool_turns.next_frame(self._now_ms(), self._response_active)
        self.leg.send_frame(frame)
        self._guard.played(frame.pcm)
        if self._guard.decider.pending:
            self._apply(self._guard.tick(self._frames_sent * FRAME_MS))
        lines = self._agent_lines.frame(
            frame.item_id if frame.speech else None, self._frames_sent * FRAME_MS
        )
        if lines:
            self._lines.emit(lines)
        if self._recording is not None:
            self._recording.tick(frame.pcm if frame.speech else None)
        self._frames_sent += 1
        if frame.speech and frame.item_id is not None:
            self._cuts.frame_heard(frame.item_id)
            probe = self._downlink_probe
            if probe is not None and probe[0] == frame.item_id:
                self.record.downlink_latency.add(time.monotonic() - probe[1])
                self._downlink_probe = None
            if self._turns.answers(frame.item_id):
                latency = self._turns.frame(time.monotonic())
                if latency is not None:
                    self._record_latency(latency)
        if not self.playback.buffer.is_playing:
            self._wake_drain()
            self._greeting.playout_idle()
        if self._opening is not None:
            self._opening.tick(self._frames_sent * FRAME_MS)
        idle = self._idle
        if idle is not None:
            quiet = not (
                self._response_active or self.playback.buffer.is_playing or self._tool_turns.busy
            )
            action = idle.tick(self._frames_sent * FRAME_MS, quiet)
            if action is not None:
                self._on_idle(action)

    def _on_idle(self, action: str) -> None:
        """The caller has been silent: ask if they are there, or say goodbye and hang up."""
        log.info("caller_idle", action=action, reprompts=self._idle.reprompts if self._idle else 0)
        if self._hangup_reason is not None:
            return
        if action == "reprompt":
            self.session.create_response(instructions=self.profile.idle_reprompt_instructions)
        elif not self._idle_goodbye:
            self._idle_goodbye = True  # hang up once the goodbye has been said
            self.session.create_response(instructions=self.profile.idle_goodbye_instructions)
        else:  # the goodbye never came: hang up anyway
            self._request_end("idle", "timeout")

    def _record_latency(self, latency: TurnLatency) -> None:
        self.record.latencies.append(latency)
        if self._observer is not None:
            self._observer.turn(latency)
        log.info(
            "turn_latency",
            to_first_delta_ms=round(latency.to_first_delta_ms, 1),
            to_first_frame_ms=round(latency.to_first_frame_ms, 1),
        )

    def _wake_drain(self) -> None:
        if not self._drained.is_set():
            self._drained.set()

    # ------------------------------------------------------------------ opening (calls we placed)

    def _opening_actions(self) -> OpeningActions:
        def say_then_hang_up(instructions: str, reason: str) -> None:
            self._end_after_response = reason
            self.session.create_response(instructions=instructions)

        return OpeningActions(
            greet=self._greeting.start,
            greeting_done=self._greeting.mark_asked,
            say_then_hang_up=say_then_hang_up,
            end_now=lambda reason: self._request_end(reason, "agent"),
            note=lambda text: self._lines.say("system", text),
        )

    # ------------------------------------------------------------------ tool context

    def request_hangup(self, reason: str) -> None:
        """Tools: end the call after the agent's last words have been played."""
        self._request_end(reason, "agent")

    def _request_end(self, reason: str, by: str) -> None:
        if self._hangup_reason is not None:
            return
        self._hangup_reason = reason
        log.info("hangup_requested", reason=reason)

        async def finish() -> None:
            await asyncio.sleep(0)
            await self._drain_then(self.profile.hangup_drain_timeout_s)
            self._end(reason, by)

        self._spawn(finish())

    async def transfer(self, target: str) -> TransferResult:
        result = await self.leg.transfer(target)
        log.info("transfer", target=target, ok=result.ok, reason=result.reason)
        if result.ok:
            self._lines.say("system", f"[transferred to {target}]")
            self._request_end("transferred", "transfer")
        else:
            self._lines.say("system", f"[transfer to {target} failed: {result.reason}]")
        return result

    def send_dtmf(self, digits: str) -> bool:
        return self.leg.send_dtmf(digits)

    # ------------------------------------------------------------------ helpers

    def _now_ms(self) -> int:
        """The call clock of records: milliseconds of media since the call started.

        The media clock, not the wall clock, so that lines, turns, barge-ins and the
        recording (one frame per tick) all share one time line.
        """
        return self._frames_sent * FRAME_MS

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
