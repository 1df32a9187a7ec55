"""The records schema, one logical design for both databases, and its migrations.

Why versioned migrations from day one: call records outlive releases. A release that
adds a column appends a migration here; `migrate` brings any older database forward in
one transaction at open, and a database written by a newer release is refused instead
of being half-understood.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from telephony_agent.records.db import Dialect, Executor
from telephony_agent.records.errors import RecordsError

_CALLS = """
CREATE TABLE calls (
    id {text} PRIMARY KEY,
    external_id {text} NOT NULL,
    kind {text} NOT NULL,
    direction {text} NOT NULL,
    caller {text} NOT NULL,
    dialled {text} NOT NULL,
    profile {text} NOT NULL,
    provider {text} NOT NULL,
    model {text},
    remote {text} NOT NULL,
    instance {text} NOT NULL,
    offered_at {real} NOT NULL,
    answered_at {real},
    codec {text},
    ended_at {real},
    end_reason {text},
    ended_by {text},
    answered {bool} NOT NULL,
    duration_s {real},
    dtmf {text} NOT NULL DEFAULT '',
    recording_path {text},
    recording_status {text},
    recording_note {text},
    turns {int} NOT NULL DEFAULT 0,
    last_event_at {real} NOT NULL
)"""

_TRANSCRIPT = """
CREATE TABLE transcript (
    call_id {text} NOT NULL,
    seq {int} NOT NULL,
    speaker {text} NOT NULL,
    text {text} NOT NULL,
    start_ms {int} NOT NULL,
    end_ms {int} NOT NULL,
    truncated {bool} NOT NULL,
    PRIMARY KEY (call_id, seq)
)"""

_TURNS = """
CREATE TABLE turns (
    call_id {text} NOT NULL,
    seq {int} NOT NULL,
    at_ms {int} NOT NULL,
    to_first_delta_ms {real} NOT NULL,
    to_first_frame_ms {real} NOT NULL,
    PRIMARY KEY (call_id, seq)
)"""

_BARGE_INS = """
CREATE TABLE barge_ins (
    call_id {text} NOT NULL,
    seq {int} NOT NULL,
    at_ms {int} NOT NULL,
    item_id {text},
    played_ms {int} NOT NULL,
    truncated {bool} NOT NULL,
    PRIMARY KEY (call_id, seq)
)"""

_TOOL_CALLS = """
CREATE TABLE tool_calls (
    call_id {text} NOT NULL,
    seq {int} NOT NULL,
    name {text} NOT NULL,
    arguments {text} NOT NULL,
    output {text} NOT NULL,
    ok {bool} NOT NULL,
    error {text},
    duration_ms {real} NOT NULL,
    started_at {real} NOT NULL,
    PRIMARY KEY (call_id, seq)
)"""

_INDEXES = (
    # Listing newest first, and cursor paging by (offered_at, id).
    "CREATE INDEX calls_offered_idx ON calls (offered_at, id)",
    "CREATE INDEX calls_profile_idx ON calls (profile, offered_at)",
    # get_call by SIP Call-ID.
    "CREATE INDEX calls_external_idx ON calls (external_id)",
    # mark_crashed: this instance's calls with no end.
    "CREATE INDEX calls_open_idx ON calls (instance, ended_at)",
    # prune: calls that ended before a time.
    "CREATE INDEX calls_ended_idx ON calls (ended_at)",
)

PER_CALL_TABLES = ("transcript", "turns", "barge_ins", "tool_calls")


def _initial(dialect: Dialect) -> list[str]:
    tables = [_CALLS, _TRANSCRIPT, _TURNS, _BARGE_INS, _TOOL_CALLS]
    return [t.strip().format(**dialect.types) for t in tables] + list(_INDEXES)


@dataclass(frozen=True)
class Migration:
    """Statements that take a database from `version - 1` to `version`."""

    version: int
    summary: str
    statements: Callable[[Dialect], list[str]]


MIGRATIONS: tuple[Migration, ...] = (Migration(1, "initial schema", _initial),)
LATEST_VERSION = MIGRATIONS[-1].version


def current_version(db: Executor, dialect: Dialect) -> int:
    """The version a database is at; 0 for one that has never been migrated."""
    if not db.rows(dialect.table_exists, ("schema_version",)):
        return 0
    rows = db.rows("SELECT version FROM schema_version")
    return max((int(r[0]) for r in rows), default=0)


def migrate(db: Executor, dialect: Dialect, shown_url: str) -> int:
    """Bring the schema up to date; call inside one write transaction. Returns the version."""
    if dialect.migration_lock:
        db.rows(dialect.migration_lock)
    db.change("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    version = current_version(db, dialect)
    _refuse_newer(version, shown_url)
    for migration in MIGRATIONS[version:]:
        for statement in migration.statements(dialect):
            db.change(statement)
    if version != LATEST_VERSION:
        db.change("DELETE FROM schema_version")
        db.change("INSERT INTO schema_version (version) VALUES (?)", (LATEST_VERSION,))
    return LATEST_VERSION


def require_current(db: Executor, dialect: Dialect, shown_url: str) -> None:
    """For readers, who never migrate: the schema must be exactly the one we know."""
    version = current_version(db, dialect)
    _refuse_newer(version, shown_url)
    if version < LATEST_VERSION:
        raise RecordsError(
            f"records database {shown_url} has schema version {version}, older than this"
            f" telephony-agent uses ({LATEST_VERSION}): start `telephony-agent serve` with"
            " it once to upgrade it"
        )


def _refuse_newer(version: int, shown_url: str) -> None:
    if version > LATEST_VERSION:
        raise RecordsError(
            f"records database {shown_url} has schema version {version}, newer than this"
            f" telephony-agent understands ({LATEST_VERSION}): upgrade telephony-agent"
        )
