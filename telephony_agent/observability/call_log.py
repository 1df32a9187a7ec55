"""One log line per call event, each carrying the call's ids and profile.

Why a listener and not log calls spread over the front doors: every call, SIP or
browser, passes the switchboard, so one place writes the same fields for all of them
(`call_id` is ours — the id of `/calls/{id}` and `telephony-agent calls show`;
`sip_call_id` is the SIP Call-ID for SIP calls; `profile`). Lines a log search joins
on a call id are then complete whatever front door the call came through.

The events are named `call_event_<what>` (offered, refused, abandoned, started, turn,
tool, barge_in, keypad, transcript, ended), one family to filter on beside the lines
the front doors and the Call write in their own words.

What callers say stays out of info-level lines: transcript lines are logged at debug
(the records keep them); keypad digits are logged as a count, never as the digits.
"""

from __future__ import annotations

from typing import Any

import structlog

from telephony_agent.call.record import BargeIn, CallRecord, TranscriptLine, TurnLatency
from telephony_agent.call.tools import ToolResult
from telephony_agent.observability.call_metrics import reason_label
from telephony_agent.switchboard import Admission, CallListener, CallRequest, LiveCall, Refusal

__all__ = ["CallEventLog"]

log = structlog.get_logger(__name__)


def _ids(request: CallRequest, call_id: str, profile: str) -> dict[str, Any]:
    ids: dict[str, Any] = {"call_id": call_id, "profile": profile, "kind": request.kind}
    if request.kind == "sip":
        ids["sip_call_id"] = request.external_id[:128]
    return ids


def _live(call: LiveCall) -> Any:
    return log.bind(**_ids(call.request, call.id, call.profile.name))


class CallEventLog(CallListener):
    def call_offered(self, admission: Admission) -> None:
        request = admission.request
        log.info(
            "call_event_offered",
            **_ids(request, admission.id, admission.profile.name),
            direction=request.direction,
            caller=request.caller,
            dialled=request.dialled,
            remote=request.remote,
            provider=admission.provider,
        )

    def call_refused(self, request: CallRequest, refusal: Refusal) -> None:
        fields: dict[str, Any] = {"kind": request.kind, "reason": refusal.reason}
        if request.kind == "sip":
            fields["sip_call_id"] = request.external_id[:128]
        # An overload refuses calls by the hundred when a flood meets a full machine: one
        # info line each would spend the CPU that is short. Entering and leaving overload
        # are logged instead (`overload_entered`, `overload_left`); each refusal is counted.
        emit = log.debug if refusal.reason == "overloaded" else log.info
        emit("call_event_refused", **fields, direction=request.direction)

    def call_abandoned(self, admission: Admission, reason: str) -> None:
        log.info(
            "call_event_abandoned",
            **_ids(admission.request, admission.id, admission.profile.name),
            reason=reason_label(reason),
        )

    def call_started(self, call: LiveCall) -> None:
        _live(call).info("call_event_started", codec=call.call.leg.codec, provider=call.provider)

    def transcript(self, call: LiveCall, line: TranscriptLine) -> None:
        _live(call).debug(
            "call_event_transcript",
            speaker=line.speaker,
            text=line.text,
            start_ms=line.start_ms,
            truncated=line.truncated,
        )

    def tool_called(self, call: LiveCall, result: ToolResult) -> None:
        _live(call).info(
            "call_event_tool",
            tool=result.name,
            ok=result.ok,
            error=result.error,
            duration_ms=round(result.duration_ms, 1),
        )

    def turn(self, call: LiveCall, latency: TurnLatency) -> None:
        _live(call).info(
            "call_event_turn",
            to_first_audio_ms=round(latency.to_first_delta_ms, 1),
            to_first_frame_ms=round(latency.to_first_frame_ms, 1),
            at_ms=latency.at_ms,
        )

    def barge_in(self, call: LiveCall, barge_in: BargeIn) -> None:
        _live(call).info(
            "call_event_barge_in", played_ms=barge_in.played_ms, truncated=barge_in.truncated
        )

    def dtmf(self, call: LiveCall, digits: str) -> None:
        _live(call).info("call_event_keypad", digits=len(digits))

    def call_ended(self, call: LiveCall, record: CallRecord) -> None:
        summary = record.latency_summary()
        _live(call).info(
            "call_event_ended",
            reason=record.end_reason,
            ended_by=record.ended_by,
            duration_s=round(record.duration_s, 3),
            turns=len(record.latencies),
            turn_p50_ms=round(summary["p50_ms"], 1) if summary else None,
            tool_calls=record.tool_calls,
            barge_ins=len(record.barge_ins),
            reconnects=record.reconnects,
            errors=record.errors,
            underruns=record.underruns,
        )
