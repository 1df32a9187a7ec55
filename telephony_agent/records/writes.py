"""How each event changes the database, and the two clean-ups (crashed calls, pruning).

Why every statement is idempotent: the writer retries an event whose transaction failed,
and after a lost connection it cannot know whether the commit happened. Inserts of a
call are `ON CONFLICT DO NOTHING`, lines are upserts keyed by `(call_id, seq)`, and
updates set absolute values, so applying an event twice leaves the same rows as once.

`last_event_at` is the latest time any event of the call carried (unix seconds; lines on
the call clock are placed after the answer), which is where `mark_crashed` ends a call
whose process died.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from telephony_agent.records.db import Executor
from telephony_agent.records.events import (
    BargeInRecorded,
    CallAnswered,
    CallEnded,
    CallOffered,
    DtmfEntered,
    RecordEvent,
    RecordingChanged,
    ToolCalled,
    TranscriptAdded,
    TurnMeasured,
)
from telephony_agent.records.schema import PER_CALL_TABLES

log = structlog.get_logger(__name__)

_OFFER_COLUMNS = (
    "id",
    "external_id",
    "kind",
    "direction",
    "caller",
    "dialled",
    "profile",
    "provider",
    "model",
    "remote",
    "instance",
    "offered_at",
    "answered",
    "last_event_at",
)
_LINES: dict[str, tuple[str, ...]] = {
    "transcript": ("speaker", "text", "start_ms", "end_ms", "truncated"),
    "turns": ("at_ms", "to_first_delta_ms", "to_first_frame_ms"),
    "barge_ins": ("at_ms", "item_id", "played_ms", "truncated"),
    "tool_calls": (
        "name",
        "arguments",
        "output",
        "ok",
        "error",
        "duration_ms",
        "started_at",
    ),
}
# Talk time: from the answer to the end, 0 for a call that was never answered.
_DURATION = (
    "CASE WHEN answered_at IS NULL OR ended_at < answered_at THEN 0.0"
    " ELSE ended_at - answered_at END"
)
# Moves last_event_at forward only; the two `?` are the same time.
_LATEST_AT = "last_event_at = CASE WHEN last_event_at >= ? THEN last_event_at ELSE ? END"
_LATEST_ON_CALL_CLOCK = (
    "last_event_at = CASE WHEN last_event_at >= COALESCE(answered_at, offered_at) + ?"
    " THEN last_event_at ELSE COALESCE(answered_at, offered_at) + ? END"
)


def apply_event(db: Executor, event: RecordEvent) -> None:
    """Apply one event inside the caller's transaction."""
    match event:
        case CallOffered():
            _offer(db, event)
        case CallAnswered(answered_at=at):
            changes = f"answered_at = ?, codec = ?, answered = ?, {_LATEST_AT}"
            _update(db, event, changes, (at, event.codec, True, at, at))
        case TranscriptAdded():
            line = (event.speaker, event.text, event.start_ms, event.end_ms, event.truncated)
            _line(db, event.call_id, "transcript", event.seq, line, event.end_ms / 1000)
        case TurnMeasured():
            _turn(db, event)
        case BargeInRecorded():
            cut = (event.at_ms, event.item_id, event.played_ms, event.truncated)
            _line(db, event.call_id, "barge_ins", event.seq, cut, event.at_ms / 1000)
        case ToolCalled():
            _tool(db, event)
        case DtmfEntered():
            _update(db, event, "dtmf = ?", (event.digits,))
        case RecordingChanged():
            changes = "recording_path = ?, recording_status = ?, recording_note = ?"
            _update(db, event, changes, (event.path, event.status, event.note))
        case CallEnded():
            _end(db, event)
        case _:
            raise TypeError(f"not a record event: {type(event).__name__}")


def mark_crashed(db: Executor, now: float, instance: str) -> list[str]:
    """End this instance's calls that have no end: at their last event, never after `now`."""
    where = "instance = ? AND ended_at IS NULL AND offered_at <= ?"
    ids = [str(r[0]) for r in db.rows(f"SELECT id FROM calls WHERE {where}", (instance, now))]
    if not ids:
        return []
    db.change(
        "UPDATE calls SET"
        " ended_at = CASE WHEN last_event_at <= ? THEN last_event_at ELSE ? END,"
        " end_reason = 'crashed', ended_by = 'crash',"
        " recording_status = CASE WHEN recording_status = 'recording' THEN 'partial'"
        " ELSE recording_status END"
        f" WHERE {where}",
        (now, now, instance, now),
    )
    db.change(
        f"UPDATE calls SET duration_s = {_DURATION}"
        " WHERE instance = ? AND end_reason = 'crashed' AND duration_s IS NULL",
        (instance,),
    )
    return ids


def prune(db: Executor, older_than: float) -> list[str]:
    """Delete calls that ended before `older_than`; returns their recording paths."""
    rows = db.rows("SELECT recording_path FROM calls WHERE ended_at < ?", (older_than,))
    for table in PER_CALL_TABLES:
        db.change(
            f"DELETE FROM {table} WHERE call_id IN (SELECT id FROM calls WHERE ended_at < ?)",
            (older_than,),
        )
    db.change("DELETE FROM calls WHERE ended_at < ?", (older_than,))
    return [str(r[0]) for r in rows if r[0]]


def _offer(db: Executor, e: CallOffered) -> None:
    values = (
        e.call_id,
        e.external_id,
        e.kind,
        e.direction,
        e.caller,
        e.dialled,
        e.profile,
        e.provider,
        e.model,
        e.remote,
        e.instance,
        e.offered_at,
        False,
        e.offered_at,
    )
    marks = ", ".join("?" for _ in values)
    db.change(
        f"INSERT INTO calls ({', '.join(_OFFER_COLUMNS)}) VALUES ({marks})"
        " ON CONFLICT (id) DO NOTHING",
        values,
    )


def _turn(db: Executor, e: TurnMeasured) -> None:
    turn = (e.at_ms, e.to_first_delta_ms, e.to_first_frame_ms)
    if _line(db, e.call_id, "turns", e.seq, turn, e.at_ms / 1000):
        db.change(
            "UPDATE calls SET turns = (SELECT COUNT(*) FROM turns"
            " WHERE turns.call_id = calls.id) WHERE id = ?",
            (e.call_id,),
        )


def _end(db: Executor, e: CallEnded) -> None:
    at = e.ended_at
    changes = f"ended_at = ?, end_reason = ?, ended_by = ?, answered = ?, {_LATEST_AT}"
    if _update(db, e, changes, (at, e.end_reason, e.ended_by, e.answered, at, at)):
        db.change(f"UPDATE calls SET duration_s = {_DURATION} WHERE id = ?", (e.call_id,))


def _tool(db: Executor, e: ToolCalled) -> None:
    values = (e.name, e.arguments, e.output, e.ok, e.error, e.duration_ms, e.started_at)
    if _line(db, e.call_id, "tool_calls", e.seq, values, None):
        done = e.started_at + e.duration_ms / 1000
        db.change(f"UPDATE calls SET {_LATEST_AT} WHERE id = ?", (done, done, e.call_id))


def _update(db: Executor, event: RecordEvent, changes: str, values: Sequence[Any]) -> bool:
    changed = db.change(f"UPDATE calls SET {changes} WHERE id = ?", (*values, event.call_id))
    if changed == 0:
        _orphan(event)
    return changed > 0


def _line(
    db: Executor,
    call_id: str,
    table: str,
    seq: int,
    values: Sequence[Any],
    call_clock_s: float | None,
) -> bool:
    """Upsert one line of a call; False (and nothing written) when the call is unknown."""
    if not db.rows("SELECT 1 FROM calls WHERE id = ?", (call_id,)):
        _orphan_line(call_id, table)
        return False
    columns = _LINES[table]
    names = ", ".join(("call_id", "seq", *columns))
    marks = ", ".join("?" for _ in range(len(columns) + 2))
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns)
    db.change(
        f"INSERT INTO {table} ({names}) VALUES ({marks})"
        f" ON CONFLICT (call_id, seq) DO UPDATE SET {updates}",
        (call_id, seq, *values),
    )
    if call_clock_s is not None:
        db.change(
            f"UPDATE calls SET {_LATEST_ON_CALL_CLOCK} WHERE id = ?",
            (call_clock_s, call_clock_s, call_id),
        )
    return True


def _orphan(event: RecordEvent) -> None:
    # Its CallOffered never arrived (dropped on a full queue): nothing to attach it to.
    log.debug("records_event_without_call", call_id=event.call_id, kind=type(event).__name__)


def _orphan_line(call_id: str, table: str) -> None:
    log.debug("records_event_without_call", call_id=call_id, table=table)
