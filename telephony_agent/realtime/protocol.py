"""Sans-I/O core of one Realtime session: frames in, typed events and JSON frames out.

Why sans-I/O: every rule that keeps a call consistent (ready exactly once, one
`response.create` at a time, cancel only what is active, never an empty or ragged
audio append, truncate never past what was received, what to replay after a
reconnect) is decided here and unit-tested without sockets, clocks or tasks. The
asyncio shell in `client.py` only moves strings.

Conventions:
* `feed(frame)` returns the events for one received frame; frames that cannot be
  read are counted in `stats` and skipped, never raised.
* Builders return the JSON text to send (or None when the rule says "do not send").
  Frames the protocol decides to send by itself in reaction to a server event (a
  queued `response.create` after `response.done`) are collected by `take_outgoing()`.
* Every client event carries a unique `event_id`; `error.event_id` is matched back to
  the type we sent and reported as `ServerError.sent_type`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from telephony_agent.realtime.audio_chunks import AudioChunker
from telephony_agent.realtime.bounded import BoundedSet
from telephony_agent.realtime.continuity import Continuity
from telephony_agent.realtime.dialect import (
    Dialect,
    normalize_event_type,
    session_payload,
)
from telephony_agent.realtime.error_rules import error_kind
from telephony_agent.realtime.events import (
    LINK_LOST,
    AudioDelta,
    FunctionCall,
    InputCommitted,
    ResponseCreated,
    ResponseDone,
    ServerError,
    ServerEvent,
    SessionCreated,
    SessionUpdated,
    SpeechStopped,
)
from telephony_agent.realtime.function_calls import FunctionCallTracker
from telephony_agent.realtime.outgoing import ClientEvents
from telephony_agent.realtime.parse import MalformedEvent, decode_frame, parse_event
from telephony_agent.realtime.session_config import SessionConfig

log = structlog.get_logger(__name__)

FatalKind = Literal["auth", "protocol", "config", "model"]

#: Codes that are never useful to the Call: we handle them here.
_TOLERATED_CODES = frozenset({"response_cancel_not_active"})
_ACTIVE_RESPONSE_CODE = "conversation_already_has_active_response"

#: Bounded memories: long calls must not grow state without limit.
_MAX_ITEMS = 256
_MAX_STALE = 256
#: Server events that carry the assistant's words, by family: the audio transcript (GA,
#: beta) and the text output (Yandex in audio mode). One item's words come from one family.
_TEXT_FAMILIES: Mapping[str, str] = {
    "response.output_audio_transcript.delta": "transcript",
    "response.output_audio_transcript.done": "transcript",
    "response.output_text.delta": "text",
    "response.output_text.done": "text",
}


@dataclass(frozen=True)
class Fatal:
    """A condition that ends the session: no retry, no reconnect."""

    kind: FatalKind
    message: str


@dataclass(frozen=True)
class _Create:
    instructions: str | None


class RealtimeProtocol:
    """State of one logical session across websocket reconnects (see module docstring)."""

    def __init__(
        self,
        config: SessionConfig,
        dialect: Dialect,
        *,
        chunk_ms: int = 20,
        recap_lines: int = 12,
        recap_role: str = "system",
        recap_max_chars: int = 4000,
        replay_max_ms: int = 15_000,
        replay_lead_ms: int = 1_000,
    ) -> None:
        if chunk_ms <= 0:
            raise ValueError(f"chunk_ms must be positive, got {chunk_ms}")
        self.config = config
        self.dialect = dialect
        self.chunk_ms = chunk_ms
        self.recap_role = recap_role
        self._out = ClientEvents(dialect)
        self._chunker = _chunker(config, chunk_ms)
        self._outbox: list[str] = []
        self.stats: Counter[str] = Counter()
        # Effective rates: what session.updated said, else what we asked for.
        self.output_rate = config.wire_output_rate
        self.input_rate = config.wire_input_rate
        #: Which family (`_TEXT_FAMILIES`) gives each assistant item its words.
        self._text_family: OrderedDict[str, str] = OrderedDict()
        # Handshake of the current connection.
        self.session_created = False
        self._updated_seen = False
        self.ready = False
        self.ready_transitions = 0
        # Responses.
        self.response_active = False
        self.response_id: str | None = None
        self._cancel_sent = False
        self._awaiting: tuple[str, _Create] | None = None  # sent create, no response.created
        self._pending: _Create | None = None  # create to send after response.done
        # The create we sent whose response has not finished yet, and whether the
        # conversation gained input (commit, tool output, message) since we sent it.
        self._open_create: _Create | None = None
        self._input_since_create = False
        self._stale = BoundedSet(_MAX_STALE)
        # Assistant audio items: bytes received, and where each was truncated; only
        # items of the live connection (`_live_items`) can be truncated on the server.
        self._item_bytes: OrderedDict[str, int] = OrderedDict()
        self._truncated_at: dict[str, int] = {}
        self._live_items = BoundedSet(_MAX_ITEMS)
        self._calls = FunctionCallTracker()
        self._live_calls = BoundedSet(_MAX_ITEMS)
        self._dead_calls = BoundedSet(_MAX_ITEMS)
        # What a replacement connection is briefed from (recap, unanswered audio).
        self.continuity = Continuity(
            recap_lines=recap_lines,
            recap_max_chars=recap_max_chars,
            replay_chunks=max(1, replay_max_ms // chunk_ms),
            lead_chunks=max(0, replay_lead_ms // chunk_ms),
        )
        # Conditions the shell acts on.
        self.fatal: Fatal | None = None
        self.expired = False

    # ------------------------------------------------------------------ lifecycle

    def connection_opened(self) -> None:
        """A new websocket is open: its handshake starts from scratch."""
        self.session_created = False
        self._updated_seen = False
        self.ready = False
        self.ready_transitions = 0
        self.expired = False
        self.fatal = None
        self._outbox.clear()

    def connection_lost(self, reason: str = LINK_LOST) -> list[ServerEvent]:
        """The websocket is gone: everything in flight has ended.

        Returns a synthetic `ResponseDone(status="cancelled", reason=reason)` for an
        active response, so the consumer's state machine stays consistent. Server-side
        state (items, audio buffer, function calls) belonged to the old connection and
        is forgotten; a `response.create` queued by the consumer survives and is sent
        once the next connection is ready (see `resume_messages`).
        """
        events: list[ServerEvent] = []
        active = self.response_id if self.response_active else None
        if active is not None:
            events.append(ResponseDone(active, "cancelled", reason))
            self._stale.add(active)
        self.continuity.link_lost(active)
        self.response_active = False
        self.response_id = None
        self._cancel_sent = False
        self._awaiting = None
        self._open_create = None
        self._forget_connection()
        return events

    def connection_switched(self) -> None:
        """A rollover: the live connection is replaced at a pause (nothing in flight).

        The new connection's handshake frames are fed in after this call, so readiness
        and rates follow the same rules as for any connection.
        """
        self.continuity.link_lost(self.response_id if self.response_active else None)
        self._forget_connection()

    def _forget_connection(self) -> None:
        """The server-side items, calls and handshake of the old connection are gone.

        Caller audio waiting to fill a chunk is kept: it goes to the next connection.
        """
        self._live_items.clear()
        for call_id in self._live_calls:
            self._dead_calls.add(call_id)
        self._live_calls.clear()
        self._calls.connection_lost()
        self.connection_opened()

    def force_ready(self) -> bool:
        """Ready without a `session.updated` (the ready timeout ran out). True if it changed."""
        if self.ready or not self.session_created:
            return False
        self._set_ready()
        return True

    def resume_messages(self, *, first: bool = False) -> list[str]:
        """What to send once a connection is ready: the briefing built by
        `Continuity.resume` (no recap on the `first` connection, which has heard it all),
        then one `response.create` if an answer is still owed that the replayed audio
        alone will not bring, or if one was queued."""
        resume = self.continuity.resume(
            self._out,
            role=self.recap_role,
            chunk_ms=self.chunk_ms,
            server_vad=self.config.vad is not None,
            recap=not first,
        )
        self.stats["audio_ms_replayed"] += resume.replayed_ms
        frames = resume.frames
        if resume.ask_response or self._pending is not None:
            create, self._pending = self._pending or _Create(None), None
            frames.append(self._send_create(create))
        return frames

    @property
    def quiet(self) -> bool:
        """A pause on the wire: nothing owed or in flight, the caller not speaking."""
        return not self.busy and self._pending is None and self.continuity.settled

    @property
    def busy(self) -> bool:
        """A response or a tool call is in flight: switching now would lose it."""
        return (
            self.response_active or self._awaiting is not None or bool(self.continuity.open_calls)
        )

    # ------------------------------------------------------------------ receive

    def feed(self, frame: str | bytes) -> list[ServerEvent]:
        """Events for one received websocket frame (possibly none)."""
        if not isinstance(frame, str):
            self.stats["binary_frames"] += 1
            log.debug("realtime_binary_frame_skipped", size=len(frame))
            return []
        obj = decode_frame(frame)
        if obj is None:
            self.stats["unreadable_frames"] += 1
            level = log.warning if self.stats["unreadable_frames"] <= 10 else log.debug
            level("realtime_unreadable_frame_skipped", size=len(frame), head=frame[:40])
            return []
        kind = normalize_event_type(obj["type"])
        if kind == "response.output_item.added":
            self._calls.output_item_added(obj)
        family = _TEXT_FAMILIES.get(kind)
        if family is not None and not self._text_from(family, obj.get("item_id")):
            self.stats["assistant_text_duplicates_skipped"] += 1
            return []
        try:
            event = parse_event(obj)
        except MalformedEvent as exc:
            self.stats["malformed_events"] += 1
            log.warning("realtime_malformed_event_skipped", type=kind, error=str(exc))
            return []
        events = self._handle(event, obj)
        for handled in events:
            self.continuity.observe(handled)
        return events

    def _text_from(self, family: str, item_id: Any) -> bool:
        """Whether this family may give `item_id` its words: the first family seen for an
        item wins, so a server that sends both the audio transcript and the text output
        never doubles the agent's line."""
        if not isinstance(item_id, str) or not item_id:
            return True
        chosen = self._text_family.setdefault(item_id, family)
        self._text_family.move_to_end(item_id)
        while len(self._text_family) > _MAX_ITEMS:
            self._text_family.popitem(last=False)
        return chosen == family

    def take_outgoing(self) -> list[str]:
        """Frames the protocol decided to send in reaction to received events."""
        out, self._outbox = self._outbox, []
        return out

    def _handle(self, event: ServerEvent, obj: dict[str, Any]) -> list[ServerEvent]:
        if isinstance(event, AudioDelta):
            if event.audio:
                self._count_audio(event.item_id, len(event.audio))
            return [event]
        if isinstance(event, SessionCreated):
            self.session_created = True
            self._maybe_ready()
            return [event]
        if isinstance(event, SessionUpdated):
            if self._g711_contradicted(event):
                self._fall_back_to_pcm(f"session.updated says {event.input_format}")
                return []
            self._on_session_updated(event)
            return [event]
        if isinstance(event, ResponseCreated):
            if self._awaiting is None:
                self._open_create = None  # the server's own response (VAD), not ours
            self.response_active = True
            self.response_id = event.response_id
            self._cancel_sent = False
            self._awaiting = None
            return [event]
        if isinstance(event, ResponseDone):
            calls = self._calls.from_response_done(event.response_id, obj)
            for call in calls:
                self._live_calls.add(call.call_id)
            return [*calls, *self._on_done(event)]
        if isinstance(event, FunctionCall):
            found = self._calls.complete(event)
            if found is not None:
                self._live_calls.add(found.call_id)
                self._dead_calls.discard(found.call_id)
            return [found] if found is not None else []
        if isinstance(event, SpeechStopped | InputCommitted):
            # Server VAD committed the caller's turn: the conversation has new input,
            # so a create asked for now answers it (it is not a duplicate).
            self._input_since_create = True
            return [event]
        if isinstance(event, ServerError):
            return self._on_error(event)
        return [event]

    def _maybe_ready(self) -> None:
        if not self.ready and self.session_created and self._updated_seen:
            self._set_ready()

    def _set_ready(self) -> None:
        self.ready = True
        self.ready_transitions += 1

    def _on_session_updated(self, event: SessionUpdated) -> None:
        self._updated_seen = True
        if event.output_rate is not None and event.output_rate != self.output_rate:
            if event.output_rate != self.config.output_rate:
                log.warning(
                    "realtime_output_rate_differs",
                    requested=self.config.output_rate,
                    effective=event.output_rate,
                )
            self.output_rate = event.output_rate
        if event.input_rate is not None and event.input_rate != self.input_rate:
            if event.input_rate != self.config.input_rate:
                # Nothing resamples uplink audio for us: the caller would sound wrong.
                log.warning(
                    "realtime_input_rate_differs",
                    sent=self.config.input_rate,
                    effective=event.input_rate,
                )
            self.input_rate = event.input_rate
        self._maybe_ready()

    def _g711_contradicted(self, event: SessionUpdated) -> bool:
        """We asked for G.711 and the echo states another format: the provider ignored it
        (some providers answer a format they lack with no error, and the audio would
        then be read at the wrong rate)."""
        if not self.config.g711 or self.ready:
            return False
        stated = [f for f in (event.input_format, event.output_format) if f is not None]
        return any(f != self.config.audio_format for f in stated)

    def _fall_back_to_pcm(self, why: str) -> None:
        """G.711 was refused during setup: ask again with PCM16 for the rest of the call."""
        log.warning(
            "realtime_g711_refused",
            format=self.config.audio_format,
            why=why[:200],
            fallback="pcm",
        )
        self.stats["g711_fallbacks"] += 1
        self.config = self.config.pcm_fallback()
        self.stats["audio_bytes_dropped"] += self._chunker.clear()
        self._chunker = _chunker(self.config, self.chunk_ms)
        self.output_rate = self.config.wire_output_rate
        self.input_rate = self.config.wire_input_rate
        self._updated_seen = False
        self._outbox.append(self.session_update())

    def _on_done(self, event: ResponseDone) -> list[ServerEvent]:
        if self.response_id is None or event.response_id == self.response_id:
            self.response_active = False
            self.response_id = None
            self._cancel_sent = False
            if self._awaiting is None:
                self._open_create = None
        if event.response_id:
            self._stale.add(event.response_id)
        if event.status == "failed":
            log.warning(
                "realtime_response_failed", response_id=event.response_id, error=event.error
            )
        if self._pending is not None and not self.response_active:
            create, self._pending = self._pending, None
            self._outbox.append(self._send_create(create))
        return [event]

    def _on_error(self, error: ServerError) -> list[ServerEvent]:
        sent_type = self.sent_type(error.event_id) if error.event_id else None
        error = dataclasses.replace(error, sent_type=sent_type)
        code = error.code or ""
        # By code (or type when there is none), for the error metrics.
        self.stats[f"error.{code or error.type or 'unknown'}"] += 1
        ours = self._awaiting is not None and error.event_id == self._awaiting[0]
        if ours:
            assert self._awaiting is not None
            create = self._awaiting[1]
            self._awaiting = None
            if code == _ACTIVE_RESPONSE_CODE:
                # The server started a response of its own first: ours waits for its end.
                if self._pending is None:
                    self._pending = create
                log.info("realtime_response_create_requeued", event_id=error.event_id)
                if not self.response_active:
                    self.response_active = True
                return []
        if code in _TOLERATED_CODES:
            log.debug("realtime_error_tolerated", code=code, event_id=error.event_id)
            return []
        kind = error_kind(error)
        if kind == "other" and self._refuses_g711(error):
            self._fall_back_to_pcm(f"{error.code or error.type}: {error.message}")
            return []
        log_fields = {
            "error_type": error.type,
            "code": error.code,
            "param": error.param,
            "event_id": error.event_id,
            "sent_type": sent_type,
            "message": error.message,
        }
        if kind == "auth":
            self.fatal = Fatal("auth", f"the provider refused the credentials: {error.message}")
            log.error("realtime_auth_error", **log_fields)
        elif kind == "protocol":
            self.fatal = Fatal(
                "protocol",
                f"the server refused our protocol shape ({code}): {error.message}",
            )
            log.error("realtime_protocol_error", **log_fields)
        elif kind == "model":
            self.fatal = Fatal("model", f"the model does not exist: {error.message}")
            log.error("realtime_model_missing", **log_fields)
        elif kind == "expired":
            self.expired = True
            log.info("realtime_session_expired", **log_fields)
        elif not self.ready and sent_type == "session.update":
            param = f" (param {error.param})" if error.param else ""
            self.fatal = Fatal(
                "config", f"the server rejected the session configuration: {error.message}{param}"
            )
            log.error("realtime_config_rejected", **log_fields)
        else:
            log.warning("realtime_server_error", **log_fields)
        return [error]

    def _refuses_g711(self, error: ServerError) -> bool:
        """An error during setup that answers our G.711 `session.update` (or names the
        audio format): the provider does not take G.711, so the call falls back to PCM."""
        if not self.config.g711 or self.ready:
            return False
        about_format = "format" in f"{error.param} {error.message}".lower()
        return error.sent_type == "session.update" or about_format

    # ------------------------------------------------------------------ accounting

    def _count_audio(self, item_id: str, size: int) -> None:
        self._live_items.add(item_id)
        self._item_bytes[item_id] = self._item_bytes.get(item_id, 0) + size
        self._item_bytes.move_to_end(item_id)
        while len(self._item_bytes) > _MAX_ITEMS:
            old, _ = self._item_bytes.popitem(last=False)
            self._truncated_at.pop(old, None)

    def received_bytes(self, item_id: str) -> int:
        return self._item_bytes.get(item_id, 0)

    def received_ms(self, item_id: str) -> int:
        """Milliseconds of assistant audio received for `item_id` at the effective rate."""
        return self.received_bytes(item_id) * 1000 // (self.config.sample_bytes * self.output_rate)

    def is_assistant_audio_item(self, item_id: str) -> bool:
        return item_id in self._item_bytes

    def is_stale(self, response_id: str) -> bool:
        """True for a response that is done or that we cancelled: its deltas are late."""
        return response_id in self._stale

    def forget(self, item_id: str) -> None:
        self._item_bytes.pop(item_id, None)
        self._truncated_at.pop(item_id, None)

    def sent_type(self, event_id: str | None) -> str | None:
        """The type of the client event we sent with this id, while still remembered."""
        return self._out.sent_type(event_id)

    @property
    def chunk_bytes(self) -> int:
        """Size of one uplink append: `chunk_ms` of audio in the session's format."""
        return self._chunker.chunk_bytes

    @property
    def audio_format(self) -> str:
        """`pcm`, `pcmu` or `pcma`: what the session carries now (after any fallback)."""
        return self.config.audio_format

    @property
    def pending_response(self) -> bool:
        """A `response.create` is queued until the active response ends."""
        return self._pending is not None

    # ------------------------------------------------------------------ send builders

    def session_update(self) -> str:
        return self._out.encode(
            {"type": "session.update", "session": session_payload(self.config, self.dialect)}
        )

    def _append(self, chunk: bytes) -> str:
        self.stats["audio_bytes_sent"] += len(chunk)
        self.continuity.appended(chunk)
        return self._out.append(chunk)

    def append_audio(self, pcm: bytes) -> list[str]:
        """Appends for every full `chunk_ms` chunk now available (often none or one)."""
        if not pcm:
            return []
        return [self._append(chunk) for chunk in self._chunker.push(pcm)]

    def flush_audio(self) -> list[str]:
        """An append for the whole samples still pending (none if nothing is)."""
        rest = self._chunker.flush()
        return [self._append(rest)] if rest else []

    def hold_audio(self, pcm: bytes) -> None:
        """No connection is live: keep the audio for the replay to the next one."""
        for chunk in self._chunker.push(pcm):
            self.stats["audio_bytes_held"] += len(chunk)
            self.continuity.appended(chunk)

    def hold_commit(self) -> None:
        """A commit while no connection is live: the turn is replayed and committed later."""
        rest = self._chunker.flush()
        if rest:
            self.stats["audio_bytes_held"] += len(rest)
            self.continuity.appended(rest)
        self._input_since_create = True
        self.continuity.committed()

    def commit(self) -> list[str]:
        """Flush the partial chunk (so the turn is complete), then commit the buffer."""
        self._input_since_create = True
        frames = [*self.flush_audio(), self._out.encode({"type": "input_audio_buffer.commit"})]
        self.continuity.committed()
        return frames

    def create_response(self, instructions: str | None = None) -> str | None:
        """`response.create` now, or None when it is queued behind a response in flight.

        A request that adds nothing to the create already in flight (no conversation
        input since, same instructions) is dropped: sent again it would make the model
        answer twice, and after a tool turn call the tools twice.
        """
        create = _Create(instructions)
        open_create = self._open_create
        if (
            open_create is not None
            and not self._input_since_create
            and (instructions is None or instructions == open_create.instructions)
        ):
            log.info("realtime_response_create_duplicate_dropped")
            return None
        if self.response_active or self._awaiting is not None:
            self.defer_response(instructions)
            return None
        return self._send_create(create)

    def defer_response(self, instructions: str | None = None) -> None:
        """Queue a `response.create`; several requests while busy collapse into one."""
        if self._pending is not None:
            log.info("realtime_response_create_coalesced")
            instructions = instructions or self._pending.instructions
        self._pending = _Create(instructions)

    def _send_create(self, create: _Create) -> str:
        event: dict[str, Any] = {"type": "response.create"}
        if create.instructions:
            event["response"] = {"instructions": create.instructions}
        text = self._out.encode(event)
        self._awaiting = (self._out.last_id, create)
        self._open_create = create
        self._input_since_create = False
        return text

    def cancel_response(self) -> str | None:
        """`response.cancel` for the active response, once; None when nothing is active."""
        if not self.response_active or self._cancel_sent:
            return None
        self._cancel_sent = True
        if self.response_id is not None:
            self._stale.add(self.response_id)
        return self._out.encode({"type": "response.cancel"})

    def truncate(self, item_id: str, audio_end_ms: int) -> str | None:
        """`conversation.item.truncate`, clamped to what was received; None when pointless.

        The caller heard `audio_end_ms` of this item: the recap keeps only that, whether
        or not the item can still be truncated on the server. Never sent for an item
        without assistant audio, of a connection that is gone, at 0 ms or below, or at or
        past a point it was already truncated to: those are all server errors.
        """
        self.continuity.heard(item_id, int(audio_end_ms), self.received_ms(item_id))
        if item_id not in self._live_items:
            why = "connection_gone" if item_id in self._item_bytes else "no_assistant_audio"
            log.info("realtime_truncate_skipped", item_id=item_id, why=why)
            return None
        end_ms = min(int(audio_end_ms), self.received_ms(item_id))
        previous = self._truncated_at.get(item_id)
        if previous is not None:
            end_ms = min(end_ms, previous)
        if end_ms <= 0 or end_ms == previous:
            log.info("realtime_truncate_skipped", item_id=item_id, audio_end_ms=audio_end_ms)
            return None
        self._truncated_at[item_id] = end_ms
        return self._out.encode(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": end_ms,
            }
        )

    def function_output(self, call_id: str, output: str) -> str:
        """The tool's result for the model. A call made on a connection that is gone is
        unknown to the live one, so its result goes as a message (and into the recap)."""
        self._input_since_create = True
        name = self.continuity.tool_name(call_id)
        self.continuity.tool_output(call_id, output)
        if call_id in self._dead_calls:
            return self._out.message(self.recap_role, f"Tool {name} returned: {output}")
        return self._out.encode(
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": call_id, "output": output},
            }
        )

    def add_message(self, role: str, text: str) -> str:
        """A text message item; it also joins the recap replayed after a reconnect."""
        self._input_since_create = True
        self.continuity.message(role, text)
        return self._out.message(role, text)

    def recap_text(self) -> str | None:
        """The recap a replacement connection would get now (see `recap.py`)."""
        return self.continuity.recap.text()


def _chunker(config: SessionConfig, chunk_ms: int) -> AudioChunker:
    """Uplink appends of `chunk_ms` each, in the session's audio format."""
    sample_bytes = config.sample_bytes
    return AudioChunker(config.wire_input_rate * chunk_ms // 1000 * sample_bytes, sample_bytes)
