"""Counters of one running backend, summed over all its connections, and a few taps.

Client tests assert on these (a correct client never gets a truncate rejected, sends
exactly one follow-up `response.create`, …), and benchmarks print them. Plain ints
updated from the event loop thread only, so no locking.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TruncateRecord:
    """One accepted truncate: what the client asked vs the audio actually sent."""

    item_id: str
    audio_end_ms: int
    sent_ms: float


#: Fields that are captures, not counters (left out of snapshots, which must be JSON).
_NOT_COUNTERS = frozenset(
    {
        "errors_by_code",
        "truncations",
        "messages",
        "response_instructions",
        "input_audio",
        "audio_in",
        "audio_out",
        "session_objects",
        "talks",
    }
)


@dataclass
class TalkLog:
    """One continuous-talk connection's caller audio as it arrived (`continuous.py`).

    A benchmark divides the seconds appended by the seconds its caller sent, and lines
    each append's arrival up with when its audio left the caller; `tag` (the session's
    instructions) says which caller it was.
    """

    tag: str = ""
    arrivals: list[float] = field(default_factory=list)
    """Event-loop clock (CLOCK_MONOTONIC) when each append was read off the socket."""
    seconds: list[float] = field(default_factory=list)
    """Audio each append carried, in seconds."""

    def to_json(self) -> dict[str, object]:
        return {"tag": self.tag, "arrivals": self.arrivals, "seconds": self.seconds}


@dataclass
class BackendStats:
    connections: int = 0
    """Websocket sessions opened (after a successful upgrade)."""
    open_connections: int = 0
    rejected_handshakes: int = 0
    """HTTP 401 answers to upgrades with a missing or wrong API key."""
    session_updates: int = 0
    audio_appends: int = 0
    audio_ms_received: float = 0.0
    speech_started: int = 0
    speech_stopped: int = 0
    commits: int = 0
    """User audio items committed (VAD, manual commit or idle timeout)."""
    idle_timeouts: int = 0
    response_creates: int = 0
    """`response.create` events received from clients (accepted or not)."""
    early_response_creates: int = 0
    """`response.create` rejected with `conversation_already_has_active_response`."""
    responses: int = 0
    """Responses started (`response.created` produced)."""
    responses_completed: int = 0
    responses_failed: int = 0
    cancels: int = 0
    """Responses that ended `cancelled`, for any reason."""
    cancels_client: int = 0
    cancels_turn_detected: int = 0
    cancels_not_active: int = 0
    """`response.cancel` with nothing to cancel (`response_cancel_not_active`)."""
    barge_ins: int = 0
    """speech_started while a response was still streaming (cancelled or not)."""
    audio_deltas: int = 0
    audio_ms_sent: float = 0.0
    function_calls: int = 0
    function_outputs: int = 0
    items_created: int = 0
    """`conversation.item.create` accepted (messages and function outputs)."""
    items_deleted: int = 0
    truncates_accepted: int = 0
    rejected_truncates: int = 0
    """Truncates answered with an error: must stay 0 for a correct client."""
    client_errors: int = 0
    """Error events caused by something a client sent (excludes injected faults)."""
    stale_client_errors: int = 0
    """`response_cancel_not_active` + `conversation_already_has_active_response`: the client
    acted on a stale idea of whether a response was running (harmless, but counted)."""
    injected_errors: int = 0
    pings_ignored: int = 0
    unsupported_requests: int = 0
    """Client events or fields the dialect's provider marks unsupported (buffer clears,
    and for Yandex `idle_timeout_ms`): must stay 0 for a client that knows the dialect."""
    unknown_models: int = 0
    """Connections refused because their model is not one of `BackendOptions.models`."""
    audio_in: bytearray = field(default_factory=bytearray)
    """With `capture`: every appended byte, as decoded from base64, in order."""
    audio_out: bytearray = field(default_factory=bytearray)
    """With `capture`: every byte of audio streamed in deltas, in order."""
    session_objects: list[dict[str, Any]] = field(default_factory=list)
    """With `capture`: the `session` object of every `session.update` received."""
    errors_by_code: Counter[str] = field(default_factory=Counter)
    truncations: deque[TruncateRecord] = field(default_factory=lambda: deque(maxlen=1000))
    """Most recent accepted truncates (bounded: benchmarks run for a long time)."""
    messages: deque[str] = field(default_factory=lambda: deque(maxlen=1000))
    """`role: text` of the most recent message items clients created (a recap, a note)."""
    response_instructions: deque[str | None] = field(default_factory=lambda: deque(maxlen=1000))
    """The `instructions` of the most recent `response.create` events (None: none given)."""
    input_audio: list[bytearray] = field(default_factory=list)
    """Per connection, all caller audio received (only with `keep_input_audio`)."""
    talks: list[TalkLog] = field(default_factory=list)
    """Per connection of the continuous behaviour, when its caller audio arrived."""

    def capture_input(self) -> bytearray:
        """A new connection's buffer for the caller audio it receives (in `input_audio`)."""
        buffer = bytearray()
        self.input_audio.append(buffer)
        return buffer

    def snapshot(self) -> dict[str, object]:
        """Plain-data copy for printing and JSON."""
        data: dict[str, object] = {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if name not in _NOT_COUNTERS
        }
        data["errors_by_code"] = dict(self.errors_by_code)
        return data
