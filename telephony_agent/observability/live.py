"""The live calls page's feed: who is on the line now, and what is being said.

Why a listener with queues: the switchboard tells listeners about every line of every
call as it is heard; the page wants those lines as they happen (server-sent events).
Each open page gets a bounded queue that hooks fill with `put_nowait`, so a slow or
stalled browser can never hold up a call: when its queue is full it is cut off and
reconnects to a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from telephony_agent.call.record import CallRecord, TranscriptLine
from telephony_agent.switchboard import Admission, CallListener, LiveCall, Switchboard

__all__ = ["LiveFeed", "Subscription"]

#: Lines of each live call kept for a page that opens mid-call.
TRANSCRIPT_KEPT = 50
#: Ended calls listed under the live ones.
RECENT_KEPT = 20
#: Events one page may have waiting before it is cut off.
QUEUE_SIZE = 512


@dataclass(eq=False)
class Subscription:
    """One open page: its events, and whether it fell too far behind."""

    queue: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE)
    )
    overflowed: bool = False


@dataclass
class _Kept:
    kept: bool
    recorded: bool
    lines: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=TRANSCRIPT_KEPT))


class LiveFeed(CallListener):
    """Snapshots of the live calls and a stream of what changes."""

    def __init__(self, board: Switchboard) -> None:
        self._board = board
        self._calls: dict[str, _Kept] = {}
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT_KEPT)
        self._subscribers: set[Subscription] = set()

    # ------------------------------------------------------------------ reading

    def snapshot(self) -> dict[str, Any]:
        """Everything a page shows when it opens."""
        return {
            "calls": [self._describe(live) for live in self._board.live_calls()],
            "ended": list(self._recent),
            "draining": self._board.draining,
        }

    def subscribe(self) -> Subscription:
        subscription = Subscription()
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    # ------------------------------------------------------------------ hooks

    def call_offered(self, admission: Admission) -> None:
        settings = admission.deployment.settings.records
        profile = admission.profile
        kept = settings.enabled if profile.keep_records is None else profile.keep_records
        recorded = settings.record if profile.record is None else profile.record
        self._calls[admission.id] = _Kept(kept=kept, recorded=bool(recorded and kept))

    def call_abandoned(self, admission: Admission, reason: str) -> None:
        self._calls.pop(admission.id, None)

    def call_started(self, call: LiveCall) -> None:
        self._publish({"type": "call_started", "call": self._describe(call)})

    def transcript(self, call: LiveCall, line: TranscriptLine) -> None:
        entry = {"speaker": line.speaker, "text": line.text, "truncated": line.truncated}
        kept = self._calls.get(call.id)
        if kept is not None:
            kept.lines.append(entry)
        self._publish({"type": "transcript", "call_id": call.id, **entry})

    def call_ended(self, call: LiveCall, record: CallRecord) -> None:
        kept = self._calls.pop(call.id, None)
        recorded = kept is not None and kept.recorded
        ended = {
            "id": call.id,
            "caller": call.request.caller,
            "dialled": call.request.dialled,
            "profile": call.profile.name,
            "kind": call.request.kind,
            "codec": call.call.leg.codec,
            "ended_at": time.time(),
            "duration_s": round(record.duration_s, 1),
            "end_reason": record.end_reason,
            "ended_by": record.ended_by,
            "record": f"/calls/{call.id}" if kept is None or kept.kept else None,
            "recording": f"/calls/{call.id}/recording" if recorded else None,
        }
        self._recent.appendleft(ended)
        self._publish({"type": "call_ended", "call": ended})

    # ------------------------------------------------------------------ helpers

    def _describe(self, live: LiveCall) -> dict[str, Any]:
        kept = self._calls.get(live.id)
        return {
            "id": live.id,
            "caller": live.request.caller,
            "dialled": live.request.dialled,
            "profile": live.profile.name,
            "kind": live.request.kind,
            "direction": live.request.direction,
            "codec": live.call.leg.codec,
            "started_at": live.started_at,
            "duration_s": round(max(0.0, time.time() - live.started_at), 1),
            "transcript": list(kept.lines) if kept is not None else [],
        }

    def _publish(self, event: dict[str, Any]) -> None:
        for subscription in list(self._subscribers):
            try:
                subscription.queue.put_nowait(event)
            except asyncio.QueueFull:
                subscription.overflowed = True
                self._subscribers.discard(subscription)
