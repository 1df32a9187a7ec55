"""The one dictionary shape of a call record, shared by every store and reader.

Why one function: the CLI prints it, the HTTP API serves it as JSON, and two databases
produce it. Building it in one place from plain rows means SQLite and PostgreSQL cannot
drift apart (booleans stored as 0/1 come out as booleans, times come out as ISO 8601 UTC
strings either way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from telephony_agent.records.db import Row

#: The `calls` columns every read selects, in this order.
CALL_COLUMNS = (
    "id",
    "external_id",
    "kind",
    "direction",
    "caller",
    "dialled",
    "profile",
    "provider",
    "model",
    "codec",
    "remote",
    "instance",
    "offered_at",
    "answered_at",
    "ended_at",
    "duration_s",
    "end_reason",
    "ended_by",
    "dtmf",
    "recording_path",
    "recording_status",
    "recording_note",
)
TURN_COLUMNS = ("at_ms", "to_first_delta_ms", "to_first_frame_ms")
BARGE_IN_COLUMNS = ("at_ms", "item_id", "played_ms", "truncated")
TOOL_COLUMNS = ("name", "arguments", "output", "ok", "error", "duration_ms", "started_at")
TRANSCRIPT_COLUMNS = ("speaker", "text", "start_ms", "end_ms", "truncated")


def iso_utc(seconds: float | None) -> str | None:
    """Unix seconds as `2024-05-01T12:00:00.123Z`, or None."""
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(float(seconds), UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def call_dict(
    row: Row,
    *,
    turns: Sequence[Row],
    barge_ins: Sequence[Row] | None = None,
    tools: Sequence[Row] | None = None,
    transcript: Sequence[Row] | None = None,
) -> dict[str, Any]:
    """A call in the public shape; the per-line lists left as None are omitted (listings)."""
    c = dict(zip(CALL_COLUMNS, row, strict=True))
    duration = c["duration_s"]
    out: dict[str, Any] = {
        "id": c["id"],
        "sip_call_id": c["external_id"],
        "kind": c["kind"],
        "direction": c["direction"],
        "from": c["caller"],
        "to": c["dialled"],
        "profile": c["profile"],
        "provider": c["provider"],
        "model": c["model"],
        "codec": c["codec"],
        "remote": c["remote"],
        "instance": c["instance"],
        "offered_at": iso_utc(c["offered_at"]),
        "answered_at": iso_utc(c["answered_at"]),
        "ended_at": iso_utc(c["ended_at"]),
        "duration_s": None if duration is None else round(float(duration), 3),
        "end_reason": c["end_reason"],
        "ended_by": c["ended_by"],
        "dtmf": c["dtmf"],
        "turns": [_turn(_named(TURN_COLUMNS, r)) for r in turns],
    }
    if barge_ins is not None:
        out["barge_ins"] = [_barge_in(_named(BARGE_IN_COLUMNS, r)) for r in barge_ins]
    if tools is not None:
        out["tools"] = [_tool(_named(TOOL_COLUMNS, r)) for r in tools]
    if transcript is not None:
        out["transcript"] = [_line(_named(TRANSCRIPT_COLUMNS, r)) for r in transcript]
    out["recording"] = c["recording_path"]
    out["recording_status"] = c["recording_status"]
    out["recording_note"] = c["recording_note"]
    return out


def _named(columns: tuple[str, ...], row: Row) -> Mapping[str, Any]:
    return dict(zip(columns, row, strict=True))


def _turn(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "at_ms": int(r["at_ms"]),
        "to_first_delta_ms": float(r["to_first_delta_ms"]),
        "to_first_frame_ms": float(r["to_first_frame_ms"]),
    }


def _barge_in(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "at_ms": int(r["at_ms"]),
        "item_id": r["item_id"],
        "played_ms": int(r["played_ms"]),
        "truncated": bool(r["truncated"]),
    }


def _tool(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": r["name"],
        "arguments": r["arguments"],
        "output": r["output"],
        "ok": bool(r["ok"]),
        "error": r["error"],
        "duration_ms": float(r["duration_ms"]),
        "started_at": iso_utc(r["started_at"]),
    }


def _line(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "speaker": r["speaker"],
        "text": r["text"],
        "start_ms": int(r["start_ms"]),
        "end_ms": int(r["end_ms"]),
        "truncated": bool(r["truncated"]),
    }
