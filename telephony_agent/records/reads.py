"""Finding calls: newest first with cursor paging, and one call by any id a person has.

Why cursor paging by call id and not offsets: calls keep arriving while someone pages
through them; "offered before this call" stays correct where "skip 20" shifts. Why three
kinds of id: the operator holds our id, the SIP trace holds the Call-ID, and a person
typing an id copies the first few characters.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from telephony_agent.records.db import Executor, Row
from telephony_agent.records.errors import RecordsError
from telephony_agent.records.shape import (
    BARGE_IN_COLUMNS,
    CALL_COLUMNS,
    TOOL_COLUMNS,
    TRANSCRIPT_COLUMNS,
    TURN_COLUMNS,
    call_dict,
)

MIN_PREFIX = 6
MAX_LIMIT = 1000
_SELECT_CALL = f"SELECT {', '.join(CALL_COLUMNS)} FROM calls"


def list_calls(
    db: Executor,
    *,
    limit: int = 20,
    before: str | None = None,
    since: float | None = None,
    profile: str | None = None,
) -> list[dict[str, Any]]:
    """Calls newest first by offered_at; `before` (any call id) pages to older ones."""
    if not 1 <= limit <= MAX_LIMIT:
        raise RecordsError(f"limit = {limit}: expected a whole number from 1 to {MAX_LIMIT}")
    where: list[str] = []
    params: list[Any] = []
    if before is not None:
        cursor = resolve_call_id(db, before)
        if cursor is None:
            raise RecordsError(f"before = {before!r}: no recorded call has that id")
        offered_at = db.rows("SELECT offered_at FROM calls WHERE id = ?", (cursor,))[0][0]
        where.append("(offered_at < ? OR (offered_at = ? AND id < ?))")
        params += [offered_at, offered_at, cursor]
    if since is not None:
        where.append("offered_at >= ?")
        params.append(since)
    if profile is not None:
        where.append("profile = ?")
        params.append(profile)
    sql = _SELECT_CALL
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY offered_at DESC, id DESC LIMIT {int(limit)}"
    rows = db.rows(sql, params)
    turns = _turns_of(db, [str(r[0]) for r in rows])
    return [call_dict(r, turns=turns.get(str(r[0]), [])) for r in rows]


def get_call(db: Executor, ref: str) -> dict[str, Any] | None:
    """The whole record of one call by our id, its external id, or a unique id prefix."""
    call_id = resolve_call_id(db, ref)
    if call_id is None:
        return None
    rows = db.rows(f"{_SELECT_CALL} WHERE id = ?", (call_id,))
    if not rows:
        return None
    return call_dict(
        rows[0],
        turns=_lines(db, "turns", TURN_COLUMNS, call_id),
        barge_ins=_lines(db, "barge_ins", BARGE_IN_COLUMNS, call_id),
        tools=_lines(db, "tool_calls", TOOL_COLUMNS, call_id),
        transcript=_lines(db, "transcript", TRANSCRIPT_COLUMNS, call_id),
    )


def resolve_call_id(db: Executor, ref: str) -> str | None:
    """Our id for `ref`: exact id, then external id (newest), then a unique id prefix."""
    ref = ref.strip()
    if not ref:
        return None
    if db.rows("SELECT id FROM calls WHERE id = ?", (ref,)):
        return ref
    rows = db.rows(
        "SELECT id FROM calls WHERE external_id = ? ORDER BY offered_at DESC LIMIT 1", (ref,)
    )
    if rows:
        return str(rows[0][0])
    if len(ref) < MIN_PREFIX:
        return None
    # The length is ours (an int), the prefix a parameter; substr works in both databases.
    rows = db.rows(f"SELECT id FROM calls WHERE substr(id, 1, {len(ref)}) = ? LIMIT 2", (ref,))
    if len(rows) > 1:
        raise RecordsError(f"call id {ref!r} is the start of more than one call: give more of it")
    return str(rows[0][0]) if rows else None


def _lines(db: Executor, table: str, columns: tuple[str, ...], call_id: str) -> list[Row]:
    return db.rows(
        f"SELECT {', '.join(columns)} FROM {table} WHERE call_id = ? ORDER BY seq", (call_id,)
    )


def _turns_of(db: Executor, call_ids: list[str]) -> dict[str, list[Row]]:
    found: dict[str, list[Row]] = defaultdict(list)
    if not call_ids:
        return found
    marks = ", ".join("?" for _ in call_ids)
    rows = db.rows(
        f"SELECT call_id, {', '.join(TURN_COLUMNS)} FROM turns"
        f" WHERE call_id IN ({marks}) ORDER BY call_id, seq",
        call_ids,
    )
    for row in rows:
        found[str(row[0])].append(row[1:])
    return found
