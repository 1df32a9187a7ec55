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

import base64
import dataclasses
import json
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from telephony_agent.realtime.audio_chunks import AudioChunker
from telephony_agent.realtime.dialect import (
    Dialect,
    assistant_text_type,
    normalize_event_type,
    session_payload,
)
from telephony_agent.realtime.error_rules import error_kind
from telephony_agent.realtime.events import (
    AssistantTranscriptDone,
    AudioDelta,
    FunctionCall,
    InputTranscript,
    ResponseCreated,
    ResponseDone,
    ServerError,
    ServerEvent,
    SessionCreated,
    SessionUpdated,
)
from telephony_agent.realtime.parse import MalformedEvent, decode_frame, parse_event
from telephony_agent.realtime.session_config import SessionConfig

log = structlog.get_logger(__name__)

FatalKind = Literal["auth", "protocol", "config", "model"]

#: Codes that are never useful to the Call: we handle them here.
_TOLERATED_CODES = frozenset({"response_cancel_not_active"})
_ACTIVE_RESPONSE_CODE = "conversation_already_has_active_response"

#: Bounded memories: long calls must not grow state without limit.
_MAX_ITEMS = 256
_MAX_SENT_IDS = 2048
_MAX_STALE = 256
_MAX_CALL_IDS = 256

#: Server events that carry the assistant's words, by family: the audio transcript (GA,
#: beta) and the text output (Yandex in audio mode). One item's words come from one family.
_TEXT_FAMILIES: Mapping[str, str] = {
    "response.output_audio_transcript.delta": "transcript",
    "response.output_audio_transcript.done": "transcript",
    "response.output_text.delta": "text",
    "response.output_text.done": "text",
}

_SPEAKERS: Mapping[str, str] = {"user": "Caller", "assistant": "Agent"}


@dataclass(frozen=True)
class Fatal:
    """A condition that ends the session: no retry, no reconnect."""

    kind: FatalKind
    message: str


@dataclass(frozen=True)
class _Create:
    instructions: str | None


class _BoundedSet:
    """Insertion-ordered set that forgets its oldest members beyond `maxlen`."""

    def __init__(self, maxlen: int) -> None:
        self._items: OrderedDict[str, None] = OrderedDict()
        self._maxlen = maxlen

    def add(self, key: str) -> None:
        self._items[key] = None
        self._items.move_to_end(key)
        while len(self._items) > self._maxlen:
            self._items.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def clear(self) -> None:
        self._items.clear()


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
    ) -> None:
        if chunk_ms <= 0:
            raise ValueError(f"chunk_ms must be positive, got {chunk_ms}")
        self.config = config
        self.dialect = dialect
        self.chunk_ms = chunk_ms
        self.recap_role = recap_role
        self.recap_max_chars = recap_max_chars
        self._id_prefix = f"evt_{uuid.uuid4().hex[:8]}_"
        self._next_id = 0
        self._last_id = ""
        self._sent_types: OrderedDict[str, str] = OrderedDict()
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
        self._stale = _BoundedSet(_MAX_STALE)
        # Assistant audio items: bytes received, and where each was truncated.
        self._item_bytes: OrderedDict[str, int] = OrderedDict()
        self._truncated_at: dict[str, int] = {}
        # Function calls: output_item.added tracking and once-per-call_id emission.
        self._call_items: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._calls_emitted = _BoundedSet(_MAX_CALL_IDS)
        self._calls_unnamed: dict[str, FunctionCall] = {}
        # Conversation recap for replay after a reconnect.
        self._recap: deque[tuple[str, str]] = deque(maxlen=max(0, recap_lines))
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

    def connection_lost(self, reason: str = "session_reconnected") -> list[ServerEvent]:
        """The websocket is gone: everything in flight has ended.

        Returns a synthetic `ResponseDone(status="cancelled", reason=reason)` for an
        active response, so the consumer's state machine stays consistent. Server-side
        state (items, audio buffer, function calls) belonged to the old connection and
        is forgotten; a `response.create` queued by the consumer survives and is sent
        once the next connection is ready (see `resume_messages`).
        """
        events: list[ServerEvent] = []
        if self.response_active and self.response_id is not None:
            events.append(ResponseDone(self.response_id, "cancelled", reason))
            self._stale.add(self.response_id)
        self.response_active = False
        self.response_id = None
        self._cancel_sent = False
        self._awaiting = None
        self._open_create = None
        self._outbox.clear()
        dropped = self._chunker.clear()
        if dropped:
            self.stats["audio_bytes_dropped"] += dropped
        self._item_bytes.clear()
        self._truncated_at.clear()
        self._call_items.clear()
        self._calls_unnamed.clear()
        self.ready = False
        self.session_created = False
        self._updated_seen = False
        return events

    def force_ready(self) -> bool:
        """Ready without a `session.updated` (the ready timeout ran out). True if it changed."""
        if self.ready or not self.session_created:
            return False
        self._set_ready()
        return True

    def resume_messages(self) -> list[str]:
        """What to send once a replacement connection is ready: recap, then a queued create."""
        messages: list[str] = []
        recap = self.recap_message()
        if recap is not None:
            messages.append(recap)
        if self._pending is not None:
            create, self._pending = self._pending, None
            messages.append(self._send_create(create))
        return messages

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
            self._track_output_item(obj)
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
        return self._handle(event, obj)

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
            return [*self._calls_from_output(event.response_id, obj), *self._on_done(event)]
        if isinstance(event, FunctionCall):
            call = self._complete_call(event)
            return [call] if call is not None else []
        if isinstance(event, InputTranscript):
            if event.final and event.transcript.strip():
                self._recap.append(("Caller", event.transcript.strip()))
            return [event]
        if isinstance(event, AssistantTranscriptDone):
            if event.text.strip():
                self._recap.append(("Agent", event.text.strip()))
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

    # ------------------------------------------------------------------ function calls

    def _track_output_item(self, obj: dict[str, Any]) -> None:
        item = obj.get("item")
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return
        item_id, call_id, name = item.get("id"), item.get("call_id"), item.get("name")
        if isinstance(item_id, str) and isinstance(call_id, str) and isinstance(name, str):
            self._call_items[item_id] = (call_id, name)
            while len(self._call_items) > _MAX_ITEMS:
                self._call_items.popitem(last=False)

    def _complete_call(self, call: FunctionCall) -> FunctionCall | None:
        """Fill in what the event lacked; emit each call_id once, only with a name."""
        tracked = self._call_items.get(call.item_id)
        if tracked is not None:
            call_id = call.call_id or tracked[0]
            call = dataclasses.replace(call, call_id=call_id, name=call.name or tracked[1])
        key = call.call_id or call.item_id
        if key in self._calls_emitted:
            return None
        if not call.name:
            self._calls_unnamed[key] = call  # output_item.done or response.done will name it
            return None
        self._calls_emitted.add(key)
        self._calls_unnamed.pop(key, None)
        return call

    def _calls_from_output(self, response_id: str, obj: dict[str, Any]) -> list[ServerEvent]:
        """Calls that only `response.done.output` completed (done events missed)."""
        response = obj.get("response")
        output = response.get("output") if isinstance(response, dict) else None
        events: list[ServerEvent] = []
        for item in output if isinstance(output, list) else []:
            if not isinstance(item, dict) or item.get("type") != "function_call":
                continue
            if item.get("status") not in (None, "completed"):
                continue
            raw = FunctionCall(
                response_id=response_id,
                item_id=str(item.get("id") or ""),
                call_id=str(item.get("call_id") or ""),
                name=str(item.get("name") or ""),
                arguments=str(item.get("arguments") or ""),
            )
            key = raw.call_id or raw.item_id
            if not raw.name and key in self._calls_unnamed:
                raw = dataclasses.replace(raw, arguments=self._calls_unnamed[key].arguments)
            call = self._complete_call(raw)
            if call is not None:
                events.append(call)
        self._calls_unnamed.clear()
        return events

    # ------------------------------------------------------------------ accounting

    def _count_audio(self, item_id: str, size: int) -> None:
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
        return self._sent_types.get(event_id) if event_id else None

    @property
    def recap_lines(self) -> list[tuple[str, str]]:
        return list(self._recap)

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

    def _encode(self, event: dict[str, Any]) -> str:
        self._next_id += 1
        event_id = self._last_id = f"{self._id_prefix}{self._next_id}"
        kind = str(event["type"])
        self._sent_types[event_id] = kind
        if len(self._sent_types) > _MAX_SENT_IDS:
            self._sent_types.popitem(last=False)
        if kind != "input_audio_buffer.append":
            log.debug("realtime_send", type=kind, event_id=event_id)
        return json.dumps({"type": kind, "event_id": event_id, **event}, separators=(",", ":"))

    def session_update(self) -> str:
        return self._encode(
            {"type": "session.update", "session": session_payload(self.config, self.dialect)}
        )

    def _append(self, chunk: bytes) -> str:
        """One append, formatted directly: 50 of these per second per call, and
        `json.dumps` spends ~3.5 µs escaping a base64 string that never needs it."""
        self.stats["audio_bytes_sent"] += len(chunk)
        self._next_id += 1
        event_id = self._last_id = f"{self._id_prefix}{self._next_id}"
        self._sent_types[event_id] = "input_audio_buffer.append"
        if len(self._sent_types) > _MAX_SENT_IDS:
            self._sent_types.popitem(last=False)
        audio = base64.b64encode(chunk).decode("ascii")
        return (
            '{"type":"input_audio_buffer.append","event_id":"'
            + event_id
            + '","audio":"'
            + audio
            + '"}'
        )

    def append_audio(self, pcm: bytes) -> list[str]:
        """Appends for every full `chunk_ms` chunk now available (often none or one)."""
        if not pcm:
            return []
        return [self._append(chunk) for chunk in self._chunker.push(pcm)]

    def flush_audio(self) -> list[str]:
        """An append for the whole samples still pending (none if nothing is)."""
        rest = self._chunker.flush()
        return [self._append(rest)] if rest else []

    def drop_pending_audio(self) -> int:
        """Forget audio waiting to fill a chunk; returns bytes dropped."""
        dropped = self._chunker.clear()
        self.stats["audio_bytes_dropped"] += dropped
        return dropped

    def commit(self) -> list[str]:
        """Flush the partial chunk (so the turn is complete), then commit the buffer."""
        self._input_since_create = True
        return [*self.flush_audio(), self._encode({"type": "input_audio_buffer.commit"})]

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
        text = self._encode(event)
        self._awaiting = (self._last_id, create)
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
        return self._encode({"type": "response.cancel"})

    def truncate(self, item_id: str, audio_end_ms: int) -> str | None:
        """`conversation.item.truncate`, clamped to what was received; None when pointless.

        Never sent for an item without assistant audio, at 0 ms or below, or at or past
        a point this item was already truncated to: those are all server errors.
        """
        if item_id not in self._item_bytes:
            log.info("realtime_truncate_skipped", item_id=item_id, why="no_assistant_audio")
            return None
        end_ms = min(int(audio_end_ms), self.received_ms(item_id))
        previous = self._truncated_at.get(item_id)
        if previous is not None:
            end_ms = min(end_ms, previous)
        if end_ms <= 0 or end_ms == previous:
            log.info("realtime_truncate_skipped", item_id=item_id, audio_end_ms=audio_end_ms)
            return None
        self._truncated_at[item_id] = end_ms
        return self._encode(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": end_ms,
            }
        )

    def function_output(self, call_id: str, output: str) -> str:
        self._input_since_create = True
        return self._encode(
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": call_id, "output": output},
            }
        )

    def add_message(self, role: str, text: str) -> str:
        """A text message item; it also joins the recap replayed after a reconnect."""
        self._input_since_create = True
        if text.strip():
            self._recap.append((_SPEAKERS.get(role, "Note"), text.strip()))
        return self._message(role, text)

    def _message(self, role: str, text: str) -> str:
        content_type = assistant_text_type(self.dialect) if role == "assistant" else "input_text"
        return self._encode(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": role,
                    "content": [{"type": content_type, "text": text}],
                },
            }
        )

    def recap_text(self) -> str | None:
        """'Conversation so far:' and the last transcript lines, within the char budget."""
        lines: list[str] = []
        budget = self.recap_max_chars
        for speaker, text in reversed(self._recap):
            line = f"{speaker}: {text}"
            if len(line) + 1 > budget:
                break
            lines.append(line)
            budget -= len(line) + 1
        if not lines:
            return None
        return "Conversation so far:\n" + "\n".join(reversed(lines))

    def recap_message(self) -> str | None:
        text = self.recap_text()
        return None if text is None else self._message(self.recap_role, text)


def _chunker(config: SessionConfig, chunk_ms: int) -> AudioChunker:
    """Uplink appends of `chunk_ms` each, in the session's audio format."""
    sample_bytes = config.sample_bytes
    return AudioChunker(config.wire_input_rate * chunk_ms // 1000 * sample_bytes, sample_bytes)
