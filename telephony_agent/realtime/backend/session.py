"""Sans-I/O state machine of one backend connection.

Feed it what the client sent (`receive_text`, `receive_binary`) and ask it, with the
current time, what to send (`poll(now)` → frames plus the time of the next paced
frame). It owns everything protocol-shaped: the session config, the input buffer and
VAD, the conversation, the active response and every fault knob. It never touches a
socket or a clock, so the conformance behaviour is testable without either, and the
asyncio shell stays a few lines.

Two lanes leave the session (`outbox.Lanes`): control events (errors, VAD events, acks)
go out at once, response events go through a paced stream.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import structlog
from numpy.typing import NDArray

from telephony_agent.realtime.backend import errors
from telephony_agent.realtime.backend.audio_format import InputDecoder
from telephony_agent.realtime.backend.behaviours import ScriptTurn, make_behaviour, seconds
from telephony_agent.realtime.backend.client_items import (
    append_bytes,
    delete_item,
    message_text,
    parse_item,
    retrieve_item,
    truncate_item,
)
from telephony_agent.realtime.backend.conversation import Conversation, ItemRecord
from telephony_agent.realtime.backend.errors import ClientFault, Rejected
from telephony_agent.realtime.backend.faults import JUNK_BINARY, JUNK_TEXT, SharedFaults
from telephony_agent.realtime.backend.ids import IdSource
from telephony_agent.realtime.backend.input_buffer import InputBuffer
from telephony_agent.realtime.backend.options import BackendOptions
from telephony_agent.realtime.backend.outbox import CloseConnection, Frame, Lanes, Step
from telephony_agent.realtime.backend.phrases import caller_phrase_spotter
from telephony_agent.realtime.backend.response import Pacing, ResponseRun, ResponseStatus
from telephony_agent.realtime.backend.session_config import (
    ConfigError,
    SessionConfig,
    apply_update,
    is_beta_shape,
)
from telephony_agent.realtime.backend.stats import BackendStats
from telephony_agent.realtime.backend.turn_inputs import (
    TurnInputs,
    caller_audio_item,
    caller_transcript,
    transcription_completed,
)
from telephony_agent.realtime.backend.vad import WINDOW_MS, EnergyVad
from telephony_agent.realtime.backend.wire_dialect import wire_dialect

log = structlog.get_logger(__name__)

MIN_COMMIT_MS = 100.0
STALE_CODES = frozenset({"response_cancel_not_active", "conversation_already_has_active_response"})


class BackendSession:
    """One connection's protocol state; see the module docstring."""

    def __init__(
        self,
        options: BackendOptions,
        stats: BackendStats,
        *,
        model: str = "gpt-realtime",
        script: tuple[ScriptTurn, ...] | None = None,
        unix_time: int = 0,
        shared: SharedFaults | None = None,
    ) -> None:
        self.options = options
        self.stats = stats
        self.shared = shared if shared is not None else SharedFaults()
        self.dialect = wire_dialect(options.dialect)
        self.ids = IdSource()
        self.behaviour = make_behaviour(options.behaviour, options.tone_hz, script)
        self.config = SessionConfig(
            id=self.ids.new("sess"),
            model=model,
            expires_at=unix_time + 3600,
            forced_output_rate=options.output_rate,
        )
        self.conversation = Conversation()
        self.conversation_id = self.ids.new("conv")
        self.buffer = InputBuffer()
        self.vad = self._new_vad()
        self.closed = False
        self.lanes = Lanes()
        self._expire_at: float | None = None
        self._input = InputDecoder(self.config.input_format)
        self._speech_item: str | None = None
        self._speech_start = 0
        self._active: ResponseRun | None = None
        self._pending_auto = False
        spotter = caller_phrase_spotter() if options.behaviour == "booking" else None
        self.inputs = TurnInputs(spotter)
        """What the next response answers (caller audio and its phrase, text, tool output)."""
        self._pending_transcripts: list[dict[str, Any]] = []
        self._idle_anchor: int | None = 0
        self._responses_started = 0
        self._injected_commit_empty = False
        self._inject_invalid_append = False
        self._captured = stats.capture_input() if options.keep_input_audio else None

    # -- lifecycle ----------------------------------------------------------------

    def start(self, now: float) -> None:
        """Queue what a server sends right after the upgrade."""
        if self.options.close_on_connect is not None:
            code, reason = self.options.close_on_connect
            self.lanes.immediate.append(CloseConnection(code, reason))
            return
        if not self.options.serves(self.config.model):
            self.stats.unknown_models += 1
            yandex = self.dialect.name == "yandex"
            self._server_error(errors.model_not_found(self.config.model, yandex))
            self.lanes.immediate.append(CloseConnection(1011, "model not found"))
            return
        if self.options.session_expire_after_s is not None:
            self._expire_at = now + self.options.session_expire_after_s
        self._push({"type": "session.created", "session": self.config.render(self.dialect)})
        if self.options.junk_frames:
            self.lanes.immediate.append(JUNK_TEXT)
            self.lanes.immediate.append(JUNK_BINARY)
        if self.options.unknown_events:
            self._push({"type": "foo.bar", "foo": {"bar": [1, 2, 3]}})

    def poll(self, now: float) -> tuple[list[Frame], float | None]:
        """Frames due at `now` (in order) and when to poll again (None: on input)."""
        if self.closed:
            return [], None
        if self._expire_at is not None and now >= self._expire_at:
            self._expire()
        frames, closed = self.lanes.poll(now, self._emit_step)
        if closed:
            self._close()
            return frames, None
        deadline = self._expire_at
        due = self.lanes.next_due()
        if due is not None:
            deadline = due if deadline is None else min(due, deadline)
        return frames, deadline

    def _close(self) -> None:
        self.closed = True
        self.lanes.clear()
        self._active = None

    def _close_now(self, close: CloseConnection | None) -> bool:
        """Queue a fault's close after what is already queued; True if there is one."""
        if close is not None:
            self.lanes.immediate.append(close)
        return close is not None

    def _expire(self) -> None:
        self._expire_at = None
        self.lanes.stream.clear()
        self._active = None
        self._server_error(errors.session_expired(self.options.session_expire_after_s or 0.0))
        self.lanes.immediate.append(CloseConnection(1001, "session_expired"))

    # -- input ----------------------------------------------------------------------

    def receive_binary(self, data: bytes) -> None:
        if not self.closed:
            self._client_error(errors.binary_frame(), None)

    def receive_text(self, text: str) -> None:
        if self.closed:
            return
        try:
            message = json.loads(text)
        except ValueError:
            self._client_error(errors.invalid_json(), None)
            return
        if not isinstance(message, dict):
            self._client_error(errors.invalid_json(), None)
            return
        event_id = message.get("event_id")
        client_event_id = event_id if isinstance(event_id, str) else None
        kind = message.get("type")
        if kind in self.dialect.unsupported_client_events:
            self.stats.unsupported_requests += 1
            self._client_error(errors.not_supported(str(kind)), client_event_id)
            return
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self._client_error(errors.unknown_event(kind), client_event_id)
            return
        try:
            handler(self, message)
        except Rejected as rejected:
            self._client_error(rejected.fault, client_event_id)
        except ConfigError as bad:
            self._client_error(ClientFault(bad.code, bad.message, bad.param), client_event_id)

    def _on_session_update(self, message: dict[str, Any]) -> None:
        session = message.get("session")
        if self.options.reject_beta_shape and isinstance(session, dict) and is_beta_shape(session):
            event_id = message.get("event_id")
            self._server_error(
                errors.beta_shape_disabled(), event_id if isinstance(event_id, str) else None
            )
            reason = "invalid_request_error.beta_api_shape_disabled"
            self.lanes.immediate.append(CloseConnection(4000, reason))
            return
        if self.options.capture and isinstance(session, dict):
            self.stats.session_objects.append(copy.deepcopy(session))
        old = self.config
        self.config = apply_update(self.config, session, g711=self.dialect.accepts_g711)
        self.stats.session_updates += 1
        td = self.config.turn_detection
        if not self.dialect.idle_timeout and td is not None and td.idle_timeout_ms is not None:
            self.stats.unsupported_requests += 1  # accepted, never fired (as documented)
        if self.config.input_format != old.input_format:
            self._input = InputDecoder(self.config.input_format)
        if (old.turn_detection, old.input_rate) != (td, self.config.input_rate):
            self._reset_turn_state()
            self.vad = self._new_vad()
        count = self.options.session_updated_count
        for _ in range(self.dialect.session_updated_per_update if count is None else count):
            self._push({"type": "session.updated", "session": self.config.render(self.dialect)})

    def _new_vad(self) -> EnergyVad:
        td = self.config.turn_detection
        silence = td.silence_duration_ms if td is not None else 500
        vad = EnergyVad(self.config.input_rate, self.options.vad_threshold_dbfs, silence)
        vad.start_at(self.buffer.end)
        return vad

    def _reset_turn_state(self) -> None:
        self._speech_item = None
        self.vad.reset()
        self._idle_anchor = self.buffer.end

    def _on_append(self, message: dict[str, Any]) -> None:
        raw = append_bytes(message)
        if self._inject_invalid_append:
            # Injected fault (conformance case 7): reject one valid append, echoing its id.
            self._inject_invalid_append = False
            event_id = message.get("event_id")
            self.stats.injected_errors += 1
            self._server_error(
                errors.empty_audio(), event_id if isinstance(event_id, str) else None
            )
            return
        if self.options.capture:
            self.stats.audio_in += raw
        self.feed_audio(self._input.decode(raw))

    def feed_audio(self, pcm: NDArray[np.int16]) -> None:
        """Append caller audio (already decoded) and run turn detection over it."""
        rate = self.config.input_rate
        if self._captured is not None:
            self._captured += pcm.tobytes()
        self.stats.audio_appends += 1
        self.stats.audio_ms_received += len(pcm) * 1000 / rate
        self.buffer.append(pcm)
        td = self.config.turn_detection
        if td is None:
            return
        for event in self.vad.feed(pcm):
            if event.kind == "start":
                self._on_speech_started(event.sample)
            else:
                self._on_speech_stopped(event.sample)
        if not self.vad.in_speech:
            keep = self._samples(td.prefix_padding_ms + WINDOW_MS)
            floor = self.buffer.end - keep
            onset = self.vad.pending_onset
            if onset is not None:
                floor = min(floor, onset - self._samples(td.prefix_padding_ms))
            self.buffer.drop_before(floor)
            self._check_idle()

    def _samples(self, ms: float) -> int:
        return int(ms * self.config.input_rate / 1000)

    def _ms(self, sample: int) -> int:
        return int(sample * 1000 // self.config.input_rate)

    def _on_speech_started(self, sample: int) -> None:
        td = self.config.turn_detection
        assert td is not None
        start = max(self.buffer.start, sample - self._samples(td.prefix_padding_ms))
        self._speech_start = start
        self._speech_item = self.ids.new("item")
        self._idle_anchor = None
        self.stats.speech_started += 1
        self._push(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": self._ms(start),
                "item_id": self._speech_item,
            }
        )
        if self._active is not None:
            self.stats.barge_ins += 1
            if td.interrupt_response and self.options.auto_cancel_on_speech:
                self._cancel_active("turn_detected")
        self._close_now(self.shared.question_close(self.options, "speech_started"))

    def _on_speech_stopped(self, sample: int) -> None:
        td = self.config.turn_detection
        assert td is not None
        item_id = self._speech_item or self.ids.new("item")
        self._speech_item = None
        self.stats.speech_stopped += 1
        self._push(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": self._ms(sample),
                "item_id": item_id,
            }
        )
        self.buffer.drop_before(self._speech_start)
        self._commit(item_id, self.buffer.take(sample))
        if self._close_now(self.shared.question_close(self.options, "committed")):
            return
        if td.create_response:
            self._auto_response()
        else:
            self._idle_anchor = self.buffer.end

    def _check_idle(self) -> None:
        td = self.config.turn_detection
        if td is None or td.idle_timeout_ms is None or self._idle_anchor is None:
            return
        if not self.dialect.idle_timeout:
            return
        if self._active is not None or self.vad.pending_onset is not None:
            return
        if self.buffer.end - self._idle_anchor < self._samples(td.idle_timeout_ms):
            return
        item_id = self.ids.new("item")
        self.stats.idle_timeouts += 1
        self._push(
            {
                "type": "input_audio_buffer.timeout_triggered",
                "audio_start_ms": self._ms(self._idle_anchor),
                "audio_end_ms": self._ms(self.buffer.end),
                "item_id": item_id,
            }
        )
        self._idle_anchor = None
        self._commit(item_id, self.buffer.take_all())
        self.inputs.forget_audio()  # silence: answer with a prompt, not an echo
        self._auto_response()

    def _on_commit(self, message: dict[str, Any]) -> None:
        buffered_ms = len(self.buffer) * 1000 / self.config.input_rate
        if buffered_ms < MIN_COMMIT_MS:
            raise Rejected(errors.commit_empty(buffered_ms))
        item_id = self._speech_item or self.ids.new("item")
        self._reset_turn_state()
        self._commit(item_id, self.buffer.take_all())

    def _on_clear(self, message: dict[str, Any]) -> None:
        self.buffer.clear()
        self._reset_turn_state()
        self._push({"type": "input_audio_buffer.cleared"})

    def _commit(self, item_id: str, audio: NDArray[np.int16]) -> None:
        """Turn buffered audio into a user item: committed, item added, transcript."""
        rate = self.config.input_rate
        wire = caller_audio_item(item_id)
        previous = self.conversation.add(
            ItemRecord(item_id, "message", "user", "input_audio", rate, wire=wire)
        )
        self.stats.commits += 1
        phrase = self.inputs.caller_audio(audio, rate)
        self._push(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": previous,
                "item_id": item_id,
            }
        )
        self._push({"type": "conversation.item.added", "previous_item_id": previous, "item": wire})
        secs = seconds(audio, rate)
        transcript = caller_transcript(phrase, secs)
        done_event = {"type": "conversation.item.done", "previous_item_id": previous, "item": wire}
        transcript_event = transcription_completed(item_id, transcript, secs)
        if self.options.transcript_timing == "before":
            wire["content"][0]["transcript"] = transcript
            self._push(transcript_event)
        elif self.options.transcript_timing == "after":
            self._pending_transcripts.append(transcript_event)
        self._push(done_event)

    # -- responses ------------------------------------------------------------------

    def _on_response_create(self, message: dict[str, Any]) -> None:
        self.stats.response_creates += 1
        if self._active is not None:
            self.stats.early_response_creates += 1
            raise Rejected(errors.active_response(self._active.id))
        params = message.get("response")
        audio_out = self.config.audio_out
        instructions = None
        self.stats.response_instructions.append(
            params.get("instructions") if isinstance(params, dict) else None
        )
        if isinstance(params, dict):
            modalities = params.get("output_modalities", params.get("modalities"))
            if isinstance(modalities, list) and modalities:
                audio_out = "audio" in modalities
            if isinstance(params.get("instructions"), str):
                instructions = params["instructions"]
        self._start_response(audio_out, instructions)

    def _auto_response(self) -> None:
        if self._active is None:
            self._start_response(self.config.audio_out)
        else:
            self._pending_auto = True

    def _start_response(self, audio_out: bool, instructions: str | None = None) -> None:
        number = self._responses_started
        self._responses_started += 1
        rate = self.config.effective_output_rate
        failing = self.options.inject_errors and number == 1
        turn = self.inputs.take(self.config.input_rate, rate, instructions)
        content = None if failing else self.behaviour.respond(turn)
        user_secs = seconds(turn.user_audio, self.config.input_rate)
        close = None
        if self.options.close_mid_response_code is not None and (
            self.shared.mid_response_close_pending
        ):
            self.shared.mid_response_close_pending = False
            close = CloseConnection(self.options.close_mid_response_code, "")
        pacing = Pacing(
            realtime_factor=self.options.realtime_factor,
            delta_ms=self.options.delta_ms,
            first_delta_delay_s=self.options.first_delta_delay_s,
            fragment=self.options.fragment_edge_cases,
            close_with=close,
            deltas_before_close=self.options.close_after_deltas,
        )
        run = ResponseRun(
            response_id=self.ids.new("resp"),
            content=content,
            audio_out=audio_out,
            output_format=self.config.effective_output_format,
            voice=self.config.voice,
            conversation_id=self.conversation_id,
            input_tokens=int(user_secs * 10) + len(self.config.instructions) // 4,
            ids=self.ids,
            dialect=self.dialect,
            pacing=pacing,
            host=self,
            rate_limits=self.dialect.name != "yandex",
            unknown_events=self.options.unknown_events,
        )
        self._active = run
        self.stats.responses += 1
        self.lanes.stream.extend(run.plan())

    def _on_response_cancel(self, message: dict[str, Any]) -> None:
        wanted = message.get("response_id")
        if self._active is None or (wanted is not None and wanted != self._active.id):
            self.stats.cancels_not_active += 1
            raise Rejected(errors.cancel_not_active())
        self._cancel_active("client_cancelled")

    def _cancel_active(self, reason: str) -> None:
        run = self._active
        assert run is not None
        self._active = None
        self.lanes.drop(run.id)
        self.lanes.stream.extend(run.cancel_plan(reason))

    # ResponseHost
    def announce(self, record: ItemRecord) -> str | None:
        if record.type == "function_call":
            self.stats.function_calls += 1
        return self.conversation.add(record)

    def audio_emitted(self, record: ItemRecord, nbytes: int) -> None:
        record.sent_bytes += nbytes
        self.stats.audio_deltas += 1
        self.stats.audio_ms_sent += nbytes / (record.sample_bytes * record.rate / 1000)

    def finished(self, run: ResponseRun, status: ResponseStatus, reason: str | None) -> None:
        if self._active is run:
            self._active = None
        if status == "completed":
            self.stats.responses_completed += 1
        elif status == "failed":
            self.stats.responses_failed += 1
        else:
            self.stats.cancels += 1
            if reason == "turn_detected":
                self.stats.cancels_turn_detected += 1
            else:
                self.stats.cancels_client += 1
        for event in self._pending_transcripts:
            self._push(event)
        self._pending_transcripts.clear()
        if self.config.turn_detection is not None and self._speech_item is None:
            self._idle_anchor = self.buffer.end
        if self.options.inject_errors and not self._injected_commit_empty:
            # Injected faults (conformance case 7), mid-call after the first response.
            self._injected_commit_empty = True
            self._inject_invalid_append = True
            self.stats.injected_errors += 1
            self._server_error(errors.commit_empty(0.0))
        if self._pending_auto and self._active is None:
            self._pending_auto = False
            self._start_response(self.config.audio_out)

    # -- conversation -----------------------------------------------------------------

    def _on_item_create(self, message: dict[str, Any]) -> None:
        created = parse_item(
            message.get("item"),
            self.conversation,
            lambda: self.ids.new("item"),
            self.config.input_format,
        )
        record = created.record
        if created.audio is not None:
            self.inputs.caller_audio(created.audio, self.config.input_rate)
        call_name = self.conversation.call_name(record.call_id) if record.call_id else None
        self.inputs.client_item(record, call_name)
        if record.type == "function_call_output":
            self.stats.function_outputs += 1
        text = message_text(record)
        if text is not None:
            self.stats.messages.append(text)
        previous = self.conversation.add(record)
        self.stats.items_created += 1
        for kind in ("conversation.item.added", "conversation.item.done"):
            self._push({"type": kind, "previous_item_id": previous, "item": record.wire})

    def _on_truncate(self, message: dict[str, Any]) -> None:
        self._push(truncate_item(message, self.conversation, self.stats))

    def _on_delete(self, message: dict[str, Any]) -> None:
        self._push(delete_item(message, self.conversation, self.stats))

    def _on_retrieve(self, message: dict[str, Any]) -> None:
        self._push(retrieve_item(message, self.conversation))

    # -- output -------------------------------------------------------------------------

    def _push(self, event: dict[str, Any]) -> None:
        frame = self._serialise(event)
        if frame is not None:
            self.lanes.immediate.append(frame)

    def _emit_step(self, step: Step) -> str | None:
        event = step.event
        assert event is not None
        if step.audio is not None:
            event["delta"] = base64.b64encode(step.audio).decode("ascii")
            if self.options.capture:
                self.stats.audio_out += step.audio
        if step.on_emit is not None:
            step.on_emit(event)
        return self._serialise(event)

    def _serialise(self, event: dict[str, Any]) -> str | None:
        return self.dialect.serialise(event, self.ids, unknown_events=self.options.unknown_events)

    def _client_error(self, fault: ClientFault, client_event_id: str | None) -> None:
        self.stats.client_errors += 1
        if fault.code in STALE_CODES:
            self.stats.stale_client_errors += 1
        self._server_error(fault, client_event_id)

    def _server_error(self, fault: ClientFault, client_event_id: str | None = None) -> None:
        self.stats.errors_by_code[fault.code or fault.type] += 1
        log.debug("error_sent", code=fault.code, param=fault.param)
        self._push(fault.event(client_event_id))

    _handlers: ClassVar[dict[str, Callable[[BackendSession, dict[str, Any]], None]]] = {
        "session.update": _on_session_update,
        "input_audio_buffer.append": _on_append,
        "input_audio_buffer.commit": _on_commit,
        "input_audio_buffer.clear": _on_clear,
        "conversation.item.create": _on_item_create,
        "conversation.item.truncate": _on_truncate,
        "conversation.item.delete": _on_delete,
        "conversation.item.retrieve": _on_retrieve,
        "response.create": _on_response_create,
        "response.cancel": _on_response_cancel,
    }
