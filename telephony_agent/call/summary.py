"""One-line summaries of a call's parts, for the transcript and the call-ended log line."""

from __future__ import annotations

from telephony_agent.call.record import CallRecord
from telephony_agent.call.tools import ToolResult

__all__ = ["bridge_fields", "ended_fields", "tool_line"]


def tool_line(result: ToolResult) -> str:
    """A transcript line for a tool call: what was asked, and what came back."""
    output = result.output if len(result.output) <= 200 else result.output[:199] + "…"
    status = "" if result.ok else " (failed)"
    return f"{result.name}({result.arguments.strip() or '{}'}){status} -> {output}"


def ended_fields(record: CallRecord) -> dict[str, float | int | str]:
    """Everything the call_ended log line says about a finished call."""
    ignored = record.ignored_speech
    return {
        "reason": record.end_reason,
        "duration_s": round(record.duration_s, 2),
        "barge_ins": len(record.barge_ins),
        "ignored_echo": ignored["echo"],
        "ignored_backchannel": ignored["backchannel"],
        "ignored_short": ignored["short"],
        "truncates": record.truncates,
        "stale_deltas_dropped": record.stale_deltas_dropped,
        "underruns": record.underruns,
        **record.latency_summary(),
        **bridge_fields(record),
    }


def bridge_fields(record: CallRecord) -> dict[str, float]:
    """Bridge latency for the call_ended line: what this process adds, both ways."""
    fields: dict[str, float] = {}
    for name, samples in (
        ("uplink", record.uplink_latency),
        ("downlink", record.downlink_latency),
    ):
        summary = samples.summary()
        if summary.count:
            fields[f"{name}_p50_ms"] = round(summary.p50_ms, 3)
            fields[f"{name}_p99_ms"] = round(summary.p99_ms, 3)
    return fields
