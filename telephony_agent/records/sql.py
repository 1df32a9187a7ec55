"""Every store operation written once, over an `Executor` and a transaction.

Why a base class: SQLite and PostgreSQL differ in how they connect, open a transaction
and recover from a failure — and in nothing else this package does. Subclasses supply
those three things; the queries (in `writes` and `reads`) are shared, so the two stores
cannot answer the same question differently.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any

import telephony_agent.records.reads as reads
import telephony_agent.records.writes as writes
from telephony_agent.records.db import Executor
from telephony_agent.records.events import RecordEvent


class SqlRecordStore(ABC):
    """A `RecordStore` on a SQL database; one instance is used by one thread at a time."""

    def __init__(self, shown_url: str) -> None:
        #: The database URL with its password masked, for messages.
        self.shown_url = shown_url

    @abstractmethod
    def _transaction(self, *, write: bool) -> AbstractContextManager[Executor]:
        """A transaction that commits on success and rolls back on any exception."""

    @abstractmethod
    def is_transient(self, exc: BaseException) -> bool:
        """Whether retrying the same operation later may succeed (lock, lost connection)."""

    @abstractmethod
    def recover(self) -> None:
        """After a failed operation: roll back what is left, reconnect a broken link."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection; the store is unusable afterwards."""

    def apply(self, event: RecordEvent) -> None:
        """Apply one event in its own committed transaction (safe to repeat)."""
        with self._transaction(write=True) as db:
            writes.apply_event(db, event)

    def mark_crashed(self, now: float, *, instance: str) -> list[str]:
        """End the calls `instance` left open when it died; returns their ids."""
        with self._transaction(write=True) as db:
            return writes.mark_crashed(db, now, instance)

    def prune(self, older_than: float) -> list[str]:
        """Delete calls that ended before `older_than`; returns their recording paths."""
        with self._transaction(write=True) as db:
            return writes.prune(db, older_than)

    def list_calls(
        self,
        *,
        limit: int = 20,
        before: str | None = None,
        since: float | None = None,
        profile: str | None = None,
    ) -> list[dict[str, Any]]:
        """Calls newest first; see `reads.list_calls`."""
        with self._transaction(write=False) as db:
            return reads.list_calls(db, limit=limit, before=before, since=since, profile=profile)

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        """One call by id, external id or unique id prefix; see `reads.get_call`."""
        with self._transaction(write=False) as db:
            return reads.get_call(db, call_id)
