"""The Call: couples one media leg with one Realtime session, in real time.

Data walks one way in and one way out, along the call's `MediaPath`:

* in: leg frame → inbound resampler (leg rate → 24 kHz), or the G.711 bytes as they
  came (passthrough) → `session.append_audio`;
* out: audio delta → `Playback` (decode, resample, queue) or `G711Playback` (queue the
  bytes) → one frame per media-clock tick → `leg.send_frame`.

Barge-in follows the protocol notes (§3): on `speech_started` playout is flushed at
once, an active response is cancelled, the interrupted item is truncated at the
milliseconds actually played (clamped to what was received, skipped at 0), and every
later delta of the interrupted response is dropped. Tool calls are collected while a
response runs and answered after its `response.done`, followed by exactly one
`response.create`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from telephony_agent.audio.clock import MediaClock
from telephony_agent.audio.playout import Frame
from telephony_agent.call.idle import IdleWatch
from telephony_agent.call.keypad import KeypadEntry
from telephony_agent.call.lines import AgentLines, CallerLines
from telephony_agent.call.media_path import MODEL_INPUT_RATE, MediaPath
from telephony_agent.call.profile import (
    GREETING_AUDIO_ITEM,
    GREETING_AUDIO_RATE,
    CallObserver,
    CallProfile,
    FrameRecorder,
)
from telephony_agent.call.record import BargeIn, CallRecord, TranscriptLine, TurnLatency
from telephony_agent.call.summary import bridge_fields, tool_line
from telephony_agent.call.tools import ToolRegistry
from telephony_agent.call.transcript import TranscriptWriter
from telephony_agent.call.turns import TurnTimer
from telephony_agent.logs import bind_call
from telephony_agent.media.leg import AudioIn, DtmfIn, LegEnded, MediaLeg
from telephony_agent.realtime.client import RealtimeSession
from telephony_agent.realtime.events import (
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


#: How many recent response/item ids are remembered as stale (bounded memory).
_STALE_MEMORY = 64


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
        self.session = session
        self.clock = clock
        self.tools = tools
        self.profile = profile or CallProfile()
        self.call_id = call_id or uuid.uuid4().hex[:12]
        self._observer = observer
        self._agent_lines = AgentLines()
        self._caller_lines = CallerLines()
        self.record = CallRecord(
            call_id=self.call_id, leg_codec=leg.codec, provider=provider, started_at=time.time()
        )
        self._lines = TranscriptWriter(self.record.transcript, self._now_ms, on_transcript)
        #: The conversions both ways (or none: G.711 passthrough), and the recorder's feed.
        self.media = MediaPath(
            leg,
            session.audio_format,
            session.output_rate,
            preroll_ms=self.profile.playout_preroll_ms,
            recorder=recorder,
        )
        self.playback = self.media.playback
        # Response state, driven by server events.
        self._response_id: str | None = None
        self._response_active = False
        self._receiving_item: str | None = None
        self._heard_item: str | None = None
        self._item_response: dict[str, str] = {}
        self._done_responses: deque[str] = deque(maxlen=_STALE_MEMORY)
        self._stale_responses: deque[str] = deque(maxlen=_STALE_MEMORY)
        self._stale_items: deque[str] = deque(maxlen=_STALE_MEMORY)
        self._truncated: deque[str] = deque(maxlen=_STALE_MEMORY)
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
        self._keypad = KeypadEntry(
            self.profile.dtmf_terminator, self.profile.dtmf_max_digits, self.profile.dtmf_message
        )
        self._frames_sent = 0
        self._dtmf_task: asyncio.Task[None] | None = None
        self._downlink_probe: tuple[str, float] | None = None
        #: A response to ask for once the active one is done (keypad entry mid-speech).
        self._create_after_response = False
        #: The model greets once the greeting recording has been played out.
        self._greet_after_audio = False
        idle_s = self.profile.idle_reprompt_s
        self._idle = (
            IdleWatch(int(idle_s * 1000), self.profile.idle_max_reprompts) if idle_s else None
        )
        self._idle_goodbye = False

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
        uplink = asyncio.create_task(self._uplink(), name=f"uplink-{self.call_id}")
        downlink = asyncio.create_task(self._downlink(), name=f"downlink-{self.call_id}")
        self._start_greeting()
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
            now_ms = self._now_ms()
            self._lines.emit(self._agent_lines.flush(now_ms))
            self._lines.emit(self._caller_lines.flush(now_ms))
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
        log.info(
            "call_ended",
            reason=self._end_reason,
            duration_s=round(self.record.duration_s, 2),
            barge_ins=len(self.record.barge_ins),
            truncates=self.record.truncates,
            stale_deltas_dropped=self.record.stale_deltas_dropped,
            underruns=self.record.underruns,
            **self.record.latency_summary(),
            **bridge_fields(self.record),
        )
        return self.record

    def _start_greeting(self) -> None:
        """Play the greeting recording, if any, then ask the model to greet, if asked."""
        audio = self.profile.greeting_audio
        if audio:
            self.playback.push_recording(GREETING_AUDIO_ITEM, audio, GREETING_AUDIO_RATE)
            self._greet_after_audio = bool(self.profile.greeting)
            self._lines.say("agent", "[greeting recording]")
        elif self.profile.greeting:
            self._greet()

    def _greet(self) -> None:
        self.session.create_response(
            instructions=f"Greet the caller, saying: {self.profile.greeting}"
        )

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

    async def _uplink(self) -> None:
        try:
            async for event in self.leg.events():
                if isinstance(event, AudioIn):
                    audio = self.media.uplink(event)
                    if audio:
                        self.session.append_audio(audio, event.received_at)
                elif isinstance(event, DtmfIn):
                    self._on_dtmf(event)
                elif isinstance(event, LegEnded):
                    log.info("leg_ended", reason=event.reason)
                    # A hang-up by the caller is the normal end; anything else (media
                    # timeout, shutdown, an unacknowledged answer) keeps its own name,
                    # and the leg is then hung up from our side.
                    normal = event.reason in ("caller_hangup", "file_finished", "closed")
                    if normal:
                        self._end("caller_hangup", "caller")
                    else:
                        self._end(event.reason, "system")
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("uplink_failed")
            self._end("media_error", "system")
            return
        self._end("caller_hangup", "caller")

    def _on_dtmf(self, event: DtmfIn) -> None:
        """Collect keypad digits; the terminator or the digit limit sends them at once."""
        self.record.dtmf += event.digit
        if self._idle is not None:
            self._idle.caller_pressed()
        self._lines.say("caller", f"[DTMF {event.digit}]")
        if self._observer is not None:
            self._observer.dtmf(self.record.dtmf)
        if self._dtmf_task is not None:
            self._dtmf_task.cancel()
            self._dtmf_task = None
        if self._keypad.press(event.digit):
            self._flush_dtmf()
        else:
            self._dtmf_task = self._spawn(self._flush_dtmf_later())

    async def _flush_dtmf_later(self) -> None:
        await asyncio.sleep(self.profile.dtmf_inter_digit_s)
        self._dtmf_task = None
        self._flush_dtmf()

    def _flush_dtmf(self) -> None:
        """The entry as one user message, then exactly one response.create.

        If the agent is mid-response, the create waits for its `response.done`: a
        second create on an active response is an error on most providers.
        """
        text = self._keypad.take()
        if text is None:
            return
        log.info("dtmf_entry")
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
            self._turns.speech_stopped(time.monotonic(), now_ms)
            if self._idle is not None:
                self._idle.caller_stopped()
            self._lines.emit(self._caller_lines.speech_stopped(event.item_id, now_ms))
        elif isinstance(event, ResponseCreated):
            self._response_id = event.response_id
            self._response_active = True
        elif isinstance(event, AudioDone):
            if not self._is_stale(event.response_id, event.item_id):
                self.playback.end_item()
                playing = self.playback.buffer.is_playing
                self._lines.emit(self._agent_lines.audio_done(event.item_id, playing=playing))
        elif isinstance(event, AssistantTranscriptDelta):
            if not self._is_stale(event.response_id, event.item_id):
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
        elif isinstance(event, FunctionCall):
            self._pending_calls.setdefault(event.response_id, []).append(event)
        elif isinstance(event, ResponseDone):
            self._on_response_done(event)
        elif isinstance(event, SessionUpdated):
            if event.output_rate and event.output_rate != self.playback.model_rate:
                log.info("model_output_rate", rate=event.output_rate)
                self.playback.set_model_rate(event.output_rate)
        elif isinstance(event, ServerError):
            self.record.errors += 1
        elif isinstance(event, SessionReconnected):
            self.record.reconnects += 1
            self._lines.say("system", "[realtime session reconnected]")
        elif isinstance(event, SessionClosed):
            log.warning("realtime_session_closed", reason=event.reason)
            self._end(f"realtime_closed: {event.reason}", "provider")

    def _is_stale(self, response_id: str | None, item_id: str | None) -> bool:
        return (response_id is not None and response_id in self._stale_responses) or (
            item_id is not None and item_id in self._stale_items
        )

    def _on_audio_delta(self, event: AudioDelta) -> None:
        if self._is_stale(event.response_id, event.item_id):
            self.record.stale_deltas_dropped += 1
            return
        if event.response_id in self._done_responses:
            # A delta after its response.done cannot be placed in the conversation.
            self.record.stale_deltas_dropped += 1
            return
        if not event.audio:
            return
        if event.item_id not in self._item_response and not self.playback.buffer.is_playing:
            # The start of a talk spurt: time it from the websocket to the leg.
            self._downlink_probe = (event.item_id, event.received_at or time.monotonic())
        self._item_response[event.item_id] = event.response_id
        self._receiving_item = event.item_id
        self._turns.delta(event.item_id, time.monotonic())
        self.playback.push_delta(event.item_id, event.audio)

    def _on_speech_started(self, event: SpeechStarted) -> None:
        # A caller who talks over the greeting recording is answered, not greeted again.
        self._greet_after_audio = False
        now_ms = self._now_ms()
        self._caller_lines.speech_started(event.item_id, now_ms)
        if self._idle is not None:
            self._idle.caller_started()
            self._idle_goodbye = False
        self._turns.speech_started()
        playing = self.playback.buffer.is_playing
        if not (playing or self._response_active):
            return
        # What the caller is hearing now, and what is still arriving; an item that
        # finished playing before this turn is history and must not be touched.
        heard_now = self._heard_item if playing else None
        arriving = self._receiving_item if self._response_active else None
        candidates = [i for i in (heard_now, arriving) if i is not None]
        heard = candidates[0] if candidates else None
        interruption = self.playback.interrupt(heard)
        if self._response_active and self._response_id is not None:
            self.session.cancel_response()
            self.record.cancels += 1
            self._stale_responses.append(self._response_id)
        truncated = False
        for item_id in dict.fromkeys(candidates):
            self._stale_items.append(item_id)
            truncated = self._truncate_if_needed(item_id) or truncated
            played = self.playback.played_ms(item_id)
            received = self.playback.received_ms(item_id)
            self._lines.emit(self._agent_lines.cut(item_id, played, received, now_ms))
        barge_in = BargeIn(self._frames_sent, heard, interruption.played_ms, truncated, now_ms)
        self.record.barge_ins.append(barge_in)
        if self._observer is not None:
            self._observer.barge_in(barge_in)
        log.info(
            "barge_in",
            item_id=heard,
            played_ms=interruption.played_ms,
            received_ms=interruption.received_ms,
            dropped_ms=interruption.dropped_ms,
        )
        self._heard_item = None
        self._receiving_item = None

    def _truncate_if_needed(self, item_id: str) -> bool:
        """Truncate at what was heard; never past what was received; skip when nothing was."""
        if item_id in self._truncated or item_id == GREETING_AUDIO_ITEM:
            return False
        received = self.playback.received_ms(item_id)
        played = max(0, min(self.playback.played_ms(item_id), received))
        response_done = self._item_response.get(item_id) in self._done_responses
        if played <= 0:
            return False
        if response_done and played >= received:
            return False  # it was heard to the end: nothing to correct
        self.session.truncate(item_id, played)
        self._truncated.append(item_id)
        self.record.truncates += 1
        return True

    def _on_response_done(self, event: ResponseDone) -> None:
        rid = event.response_id
        self._done_responses.append(rid)
        if rid == self._response_id:
            self._response_active = False
        stale = rid in self._stale_responses
        if not stale:
            self.playback.end_item()
        if (
            self._receiving_item is not None
            and self._item_response.get(self._receiving_item) == rid
        ):
            self._receiving_item = None
        calls = self._pending_calls.pop(rid, [])
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
        if calls and (stale or event.status == "cancelled"):
            log.info("tool_calls_discarded", count=len(calls), reason="response_cancelled")
            calls = []
        if calls:
            self.record.tool_calls += len(calls)
            # The follow-up response after the tools also answers a pending keypad entry.
            self._create_after_response = False
            self._spawn(self._run_tools(calls))
        elif self._idle_goodbye and not stale:
            self._request_end("idle", "timeout")
        elif self._create_after_response and rid == self._response_id:
            self._create_after_response = False
            if self._hangup_reason is None:
                self.session.create_response()
        self._wake_drain()

    async def _run_tools(self, calls: list[FunctionCall]) -> None:
        results = await asyncio.gather(
            *(self.tools.invoke(c.name, c.arguments, self) for c in calls)
        )
        for call, result in zip(calls, results, strict=True):
            self.session.send_function_output(call.call_id, result.output)
            self.record.tool_results.append(result)
            self._lines.say("tool", tool_line(result))
            if self._observer is not None:
                self._observer.tool_result(result)
        if self._hangup_reason is None and not self._ended.is_set():
            self.session.create_response()

    # ------------------------------------------------------------------ media clock

    def _on_tick(self, _tick: int) -> None:
        frame: Frame = self.playback.pop_frame()
        self.leg.send_frame(frame)
        lines = self._agent_lines.frame(
            frame.item_id if frame.speech else None, self._frames_sent * FRAME_MS
        )
        if lines:
            self._lines.emit(lines)
        self.media.record(frame)
        self._frames_sent += 1
        if frame.speech and frame.item_id is not None:
            self._heard_item = frame.item_id
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
            if self._greet_after_audio:
                self._greet_after_audio = False
                self._greet()
        idle = self._idle
        if idle is not None:
            quiet = not self._response_active and not self.playback.buffer.is_playing
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

    async def transfer(self, target: str) -> bool:
        ok = await self.leg.transfer(target)
        log.info("transfer", target=target, ok=ok)
        if ok:
            self._lines.say("system", f"[transferred to {target}]")
            self._request_end("transferred", "transfer")
        return ok

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
