"""Typed server events, named after the OpenAI GA protocol whatever the wire dialect.

Why typed and normalised: the Call's state machine must not care whether the server
said `response.audio.delta` (beta), `response.output_audio.delta` (GA) or sent the
assistant text as `response.output_text.*` (Yandex in audio mode). Parsing maps every
dialect onto these frozen dataclasses once, at the edge.

`AudioDelta.audio` holds exactly the decoded bytes of one delta, possibly empty or of
odd length: byte-exact reassembly is the consumer's concatenation. A consumer that
needs whole PCM16 samples per push uses `audio_chunks.SampleAligner`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SessionCreated:
    """The server opened the session (always its first event)."""

    session_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    """The effective configuration; rates and formats are None when the echo does not
    state them. Formats are `pcm`, `pcmu` or `pcma` whatever the dialect's spelling."""

    output_rate: int | None
    input_rate: int | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    output_format: str | None = None
    input_format: str | None = None


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio_start_ms: int
    item_id: str | None


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    audio_end_ms: int
    item_id: str | None


@dataclass(frozen=True, slots=True)
class InputCommitted:
    item_id: str | None


@dataclass(frozen=True, slots=True)
class InputTranscript:
    """Caller speech as text; `final` False for streaming deltas (OpenAI only)."""

    item_id: str | None
    transcript: str
    final: bool


@dataclass(frozen=True, slots=True)
class ItemAdded:
    """`conversation.item.added` (GA) or `conversation.item.created` (beta, Yandex)."""

    item_id: str | None
    role: str | None
    item_type: str
    previous_item_id: str | None


@dataclass(frozen=True, slots=True)
class ItemTruncated:
    item_id: str | None
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class ResponseCreated:
    response_id: str


@dataclass(frozen=True, slots=True)
class AudioDelta:
    """One delta of assistant audio, already base64-decoded (PCM16 LE at `output_rate`,
    or G.711 codes in a G.711 session)."""

    response_id: str
    item_id: str
    audio: bytes = field(repr=False)
    #: ``time.monotonic()`` when the websocket message arrived (0.0 when unknown).
    received_at: float = field(default=0.0, compare=False)


@dataclass(frozen=True, slots=True)
class AudioDone:
    response_id: str
    item_id: str


@dataclass(frozen=True, slots=True)
class AssistantTranscriptDelta:
    """From `output_audio_transcript.delta`, `output_text.delta` or their beta names."""

    response_id: str
    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class AssistantTranscriptDone:
    response_id: str
    item_id: str
    text: str


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """A complete tool call: emitted once per `call_id`, whichever done event came first."""

    response_id: str
    item_id: str
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """End of a response. `reason` is `status_details.reason` (e.g. `turn_detected`)."""

    response_id: str
    status: str
    reason: str | None = None
    error: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ServerError:
    """A non-fatal `error` event; `event_id` is the id of our client event that caused it.

    `sent_type` is the type of that client event when we still remember it.
    """

    type: str
    code: str | None
    message: str
    param: str | None
    event_id: str | None
    sent_type: str | None = None


@dataclass(frozen=True, slots=True)
class TimeoutTriggered:
    """`input_audio_buffer.timeout_triggered`: the caller was silent for `idle_timeout_ms`."""

    audio_start_ms: int | None = None
    audio_end_ms: int | None = None
    item_id: str | None = None


#: `ResponseDone.reason` of a response that ended because its connection was lost
#: (the client emits it; the server never sends it).
LINK_LOST = "session_reconnected"


@dataclass(frozen=True, slots=True)
class SessionReconnected:
    """The client replaced its websocket: a lost one (`attempt` counts tries in this
    streak), or, with `rollover`, one near its lifetime limit, at a pause."""

    attempt: int
    rollover: bool = False


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """Final event: the session is over and `events()` ends after yielding it."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """Any event type the client has no use for (rate limits, content parts, ...)."""

    type: str


ServerEvent = (
    SessionCreated
    | SessionUpdated
    | SpeechStarted
    | SpeechStopped
    | InputCommitted
    | InputTranscript
    | ItemAdded
    | ItemTruncated
    | ResponseCreated
    | AudioDelta
    | AudioDone
    | AssistantTranscriptDelta
    | AssistantTranscriptDone
    | FunctionCall
    | ResponseDone
    | ServerError
    | TimeoutTriggered
    | SessionReconnected
    | SessionClosed
    | Unknown
)
