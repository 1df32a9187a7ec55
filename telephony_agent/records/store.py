"""What a records store can do, and which one a `records.database` URL opens.

Why a Protocol: the writer and the readers depend on these operations only, never on a
database driver, so a test can hand the writer a store that is slow or fails on purpose,
and a later store (another database) needs no change above this line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from telephony_agent.records.events import RecordEvent
from telephony_agent.records.sqlite_store import SqliteRecordStore
from telephony_agent.records.urls import SqliteTarget, parse_database_url


class RecordStore(Protocol):
    """Call records in a database. Not thread-safe: one thread uses one store."""

    #: The database URL with its password masked, for messages.
    shown_url: str

    def apply(self, event: RecordEvent) -> None:
        """Apply one event in its own committed transaction; applying it again is harmless."""

    def mark_crashed(self, now: float, *, instance: str) -> list[str]:
        """End the calls `instance` left without an end (it died): at their last event,
        `end_reason` "crashed", `ended_by` "crash", a recording still "recording" becomes
        "partial". Returns their ids."""

    def prune(self, older_than: float) -> list[str]:
        """Delete calls that ended before `older_than` (unix seconds) with their lines;
        returns their recording paths for the caller to delete."""

    def list_calls(
        self,
        *,
        limit: int = 20,
        before: str | None = None,
        since: float | None = None,
        profile: str | None = None,
    ) -> list[dict[str, Any]]:
        """Calls newest first by offer time, without transcript, tools and barge-ins."""

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        """One call by our id, its external (SIP Call-ID) id, or a unique prefix of our id
        of at least 6 characters; None when nothing matches."""

    def is_transient(self, exc: BaseException) -> bool:
        """Whether the same operation may succeed if retried later."""

    def recover(self) -> None:
        """After a failed operation: roll back, and reconnect a broken connection."""

    def close(self) -> None:
        """Release the connection."""


def open_store(url: str, *, base_dir: Path | None = None, read_only: bool = False) -> RecordStore:
    """Open the store `url` names and bring its schema up to date.

    `read_only` opens a reader's connection instead: it never migrates, and refuses a
    database whose schema is not exactly the current one. Raises RecordsError (bad URL,
    unusable file, newer schema) or RecordsUnavailable (server unreachable).
    """
    target = parse_database_url(url, base_dir=base_dir)
    if isinstance(target, SqliteTarget):
        return SqliteRecordStore.open(target, read_only=read_only)
    # Imported here so SQLite users (the default) do not pay for loading psycopg.
    from telephony_agent.records.postgres_store import PostgresRecordStore

    return PostgresRecordStore.open(target, read_only=read_only)
