"""What the switchboard tells the records writer while a call goes on.

Why events and not a finished record: a record written at hang-up is lost with the
process that crashes mid-call. Each event is small, applied in its own transaction as it
happens, and safe to apply twice (lines carry `seq`), so a retry after a lost connection
never duplicates a row. Events of one call arrive in order and `CallOffered` comes first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CallOffered:
    """The call was offered (SIP INVITE or a browser offer), before it is answered."""

    call_id: str  # ours (uuid hex)
    external_id: str  # SIP Call-ID or browser call id
    kind: str  # "sip" | "webrtc" | "whip"
    direction: str  # "inbound" | "outbound"
    caller: str
    dialled: str
    profile: str
    provider: str
    model: str | None
    remote: str
    offered_at: float  # unix seconds
    instance: str  # host name / instance id of the writing process


@dataclass(frozen=True)
class CallAnswered:
    """The call was answered; `codec` is what the leg negotiated."""

    call_id: str
    answered_at: float
    codec: str


@dataclass(frozen=True)
class TranscriptAdded:
    """One transcript line; times are on the call clock (ms since the call started)."""

    call_id: str
    seq: int
    speaker: str
    text: str
    start_ms: int
    end_ms: int
    truncated: bool


@dataclass(frozen=True)
class TurnMeasured:
    """One turn's latency; `at_ms` is when the caller's speech ended, on the call clock."""

    call_id: str
    seq: int
    at_ms: int
    to_first_delta_ms: float
    to_first_frame_ms: float


@dataclass(frozen=True)
class BargeInRecorded:
    """The caller interrupted the agent; `item_id` was cut at `played_ms`."""

    call_id: str
    seq: int
    at_ms: int
    item_id: str | None
    played_ms: int
    truncated: bool


@dataclass(frozen=True)
class ToolCalled:
    """The model called a tool; `started_at` is unix seconds."""

    call_id: str
    seq: int
    name: str
    arguments: str
    output: str
    ok: bool
    error: str | None
    duration_ms: float
    started_at: float


@dataclass(frozen=True)
class DtmfEntered:
    """Keypad entry: `digits` is every digit so far (e.g. "4512#"), not just the new one."""

    call_id: str
    digits: str


@dataclass(frozen=True)
class RecordingChanged:
    """The call's audio recording started, finished, or was left partial."""

    call_id: str
    path: str
    status: str  # "recording" | "complete" | "partial"
    note: str | None = None


@dataclass(frozen=True)
class CallEnded:
    """The call is over; `ended_by` says who ended it."""

    call_id: str
    ended_at: float
    end_reason: str
    ended_by: str  # "caller" | "agent" | "timeout" | "system" | "provider" | "transfer" | "crash"
    answered: bool


RecordEvent = (
    CallOffered
    | CallAnswered
    | TranscriptAdded
    | TurnMeasured
    | BargeInRecorded
    | ToolCalled
    | DtmfEntered
    | RecordingChanged
    | CallEnded
)
