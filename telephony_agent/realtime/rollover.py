"""Replacing a Realtime session before its provider ends it, at a moment nobody hears.

Why: some providers end a session after a fixed lifetime (Yandex documents about five
minutes; OpenAI sixty). Waiting for the server to close it would cut the agent
mid-sentence or lose the caller's words while a new session is set up. Instead the
client opens the next session ahead of time (make-before-break), and switches the call
to it at a pause: no response in flight, no tool call open, the caller not speaking
and the agent not playing. If no pause comes, it switches at the last safe moment (no
response in flight) and says so in the log.

Both pieces here are sans-I/O: `RolloverPolicy` decides when, from a connection's age
and the call's state; `StandbyHandshake` reads the new connection's handshake without
touching the live conversation, and holds its frames until the switch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from telephony_agent.realtime.dialect import normalize_event_type
from telephony_agent.realtime.parse import decode_frame

Decision = Literal["wait", "prepare", "switch", "force"]

#: How often the call's state is looked at once a rollover is due.
POLL_S = 0.05
#: The longest a rollover looks for a pause; shorter lifetimes look for a quarter of it.
MAX_WINDOW_S = 60.0
#: Switch at the latest this long before the limit; shorter lifetimes use a tenth.
MAX_MARGIN_S = 5.0
#: Frames a standby connection holds before the switch (it should get very few).
MAX_HELD_FRAMES = 64


@dataclass(frozen=True)
class RolloverPolicy:
    """When to open the next session and when to switch to it, for one lifetime limit."""

    max_session_s: float

    @property
    def prepare_after_s(self) -> float:
        """From this age a standby session is opened and a pause is looked for."""
        return self.max_session_s - min(MAX_WINDOW_S, self.max_session_s / 4)

    @property
    def force_after_s(self) -> float:
        """From this age the switch happens at the first moment without a response."""
        return self.max_session_s - min(MAX_MARGIN_S, self.max_session_s / 10)

    def decide(self, age_s: float, *, standby_ready: bool, quiet: bool, busy: bool) -> Decision:
        """`quiet`: a pause (nothing owed or in flight, nobody speaking, nothing playing);
        `busy`: a response or a tool call is in flight (switching would lose it)."""
        if age_s < self.prepare_after_s:
            return "wait"
        if not standby_ready:
            return "prepare"
        if quiet:
            return "switch"
        if age_s >= self.force_after_s and not busy:
            return "force"
        return "wait"

    def next_check_s(self, age_s: float) -> float:
        """Seconds until `decide` may answer something other than "wait"."""
        return max(POLL_S, self.prepare_after_s - age_s)


class StandbyHandshake:
    """The handshake of a connection opened ahead of a switch, kept apart from the call.

    Every frame is held (bounded) and replayed into the protocol at the switch, so the
    session's own handshake rules decide readiness and rates exactly as for any
    connection. An `error` before the switch fails the standby: it is closed and
    another one is tried later.
    """

    def __init__(self) -> None:
        self.created = False
        self.ready = False
        self.forced = False
        self.failure: str | None = None
        self.held: list[str] = []
        self.dropped = 0

    def feed(self, frame: str | bytes) -> None:
        if not isinstance(frame, str):
            return
        obj = decode_frame(frame)
        if obj is None:
            return
        kind = normalize_event_type(obj["type"])
        if kind == "error":
            error = obj.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            self.failure = f"error before the switch: {message or 'no message'}"
            return
        if len(self.held) >= MAX_HELD_FRAMES:
            self.dropped += 1
            return
        self.held.append(frame)
        if kind == "session.created":
            self.created = True
        elif kind == "session.updated" and self.created:
            self.ready = True

    def force_ready(self) -> bool:
        """Ready without `session.updated` (the ready timeout ran out). True if it changed."""
        if self.ready or not self.created:
            return False
        self.ready = self.forced = True
        return True
