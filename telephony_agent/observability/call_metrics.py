"""Call counters and histograms fed by the switchboard's listener hooks.

Why a listener: the switchboard already tells listeners about every call event, on
the event loop, as it happens; counting there costs a dictionary increment and needs
nothing from the media path. Totals of finished calls (RTP packets, Realtime
reconnects and errors) are folded in here when a call ends, and the collector adds
the live calls' running counters at scrape time, so the exported totals only grow.
"""

from __future__ import annotations

import re
import time
from collections import Counter

from telephony_agent.call.record import BargeIn, CallRecord, TurnLatency
from telephony_agent.call.tools import ToolResult
from telephony_agent.observability.buckets import (
    CALL_DURATION_BUCKETS_S,
    LATENCY_BUCKETS_S,
    TOOL_BUCKETS_S,
    Buckets,
)
from telephony_agent.observability.legs import RTP_FIELDS, rtp_counters
from telephony_agent.switchboard import Admission, CallListener, CallRequest, LiveCall, Refusal

__all__ = ["CallMetrics", "error_code_label", "reason_label"]

_LABEL = re.compile(r"[^a-z0-9_.-]+")
MAX_LABEL = 48


def reason_label(reason: str) -> str:
    """An end reason as a bounded label: "realtime_closed: 1011 going away" → "realtime_closed"."""
    head = reason.split(":", 1)[0].strip().lower()
    return _LABEL.sub("_", head)[:MAX_LABEL] or "unknown"


def error_code_label(code: str) -> str:
    return _LABEL.sub("_", code.strip().lower())[:MAX_LABEL] or "unknown"


def realtime_errors(stats: dict[str, int]) -> Counter[str]:
    """A session's provider errors by code, from its counters ("error.<code>")."""
    errors: Counter[str] = Counter()
    for key, value in stats.items():
        if key.startswith("error.") and value:
            errors[error_code_label(key[len("error.") :])] += value
    return errors


CallKey = tuple[str, str, str]  # (direction, kind, profile)


class CallMetrics(CallListener):
    """Everything about calls that only a hook sees; read by `AgentCollector`."""

    def __init__(self) -> None:
        #: Calls that ran and ended, by (direction, kind, profile, end reason).
        self.ended: Counter[tuple[str, str, str, str]] = Counter()
        #: Admitted calls that never ran, by (direction, kind, profile, reason).
        self.abandoned: Counter[tuple[str, str, str, str]] = Counter()
        #: Refused calls, by (direction, kind, reason).
        self.refused: Counter[tuple[str, str, str]] = Counter()
        self.offered: Counter[CallKey] = Counter()
        self.call_duration = Buckets(CALL_DURATION_BUCKETS_S)
        self.turn_to_first_audio = Buckets(LATENCY_BUCKETS_S)
        self.turn_to_first_frame = Buckets(LATENCY_BUCKETS_S)
        self.barge_ins = 0
        self.dtmf_digits = 0
        self.tool_calls: Counter[tuple[str, str]] = Counter()
        self.tool_duration: dict[str, Buckets] = {}
        #: RTP counters of legs whose calls have ended.
        self.rtp_ended: Counter[str] = Counter({name: 0 for name in RTP_FIELDS})
        self.realtime_sessions = 0
        self.realtime_reconnects_ended = 0
        self.realtime_errors_ended: Counter[str] = Counter()
        self.realtime_session_duration = Buckets(CALL_DURATION_BUCKETS_S)
        self._offered_at: dict[str, float] = {}

    # ------------------------------------------------------------------ hooks

    def call_offered(self, admission: Admission) -> None:
        request = admission.request
        self.offered[(request.direction, request.kind, admission.profile.name)] += 1
        self._offered_at[admission.id] = time.monotonic()

    def call_refused(self, request: CallRequest, refusal: Refusal) -> None:
        self.refused[(request.direction, request.kind, refusal.reason)] += 1

    def call_abandoned(self, admission: Admission, reason: str) -> None:
        request = admission.request
        key = (request.direction, request.kind, admission.profile.name, reason_label(reason))
        self.abandoned[key] += 1
        self._offered_at.pop(admission.id, None)

    def call_started(self, call: LiveCall) -> None:
        self.realtime_sessions += 1

    def turn(self, call: LiveCall, latency: TurnLatency) -> None:
        self.turn_to_first_audio.observe(latency.to_first_delta_ms / 1000.0)
        self.turn_to_first_frame.observe(latency.to_first_frame_ms / 1000.0)

    def barge_in(self, call: LiveCall, barge_in: BargeIn) -> None:
        self.barge_ins += 1

    def dtmf(self, call: LiveCall, digits: str) -> None:
        self.dtmf_digits += len(digits)

    def tool_called(self, call: LiveCall, result: ToolResult) -> None:
        name = result.name[:MAX_LABEL]
        self.tool_calls[(name, "ok" if result.ok else "error")] += 1
        buckets = self.tool_duration.get(name)
        if buckets is None:
            buckets = self.tool_duration[name] = Buckets(TOOL_BUCKETS_S)
        buckets.observe(result.duration_ms / 1000.0)

    def call_ended(self, call: LiveCall, record: CallRecord) -> None:
        request = call.request
        key = (request.direction, request.kind, call.profile.name, reason_label(record.end_reason))
        self.ended[key] += 1
        self.call_duration.observe(record.duration_s)
        counters = rtp_counters(call.call.leg)
        if counters is not None:
            self.rtp_ended.update(counters)
        stats = call.call.session.stats
        self.realtime_reconnects_ended += stats.get("reconnects", 0)
        self.realtime_errors_ended.update(realtime_errors(stats))
        offered = self._offered_at.pop(call.id, None)
        if offered is not None:
            self.realtime_session_duration.observe(time.monotonic() - offered)
