"""Reading call records for the CLI and the HTTP API, while `serve` keeps writing.

Why a separate reader: the writer's connection belongs to the writer thread. A reader
opens its own connection — read-only SQLite (WAL lets it read while the writer commits)
or a read-only PostgreSQL session — and never migrates, so `calls list` cannot change a
database that a running service owns. The async methods run the query in a worker
thread so an HTTP handler never blocks the event loop on the database.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from telephony_agent.records.errors import RecordsError, RecordsUnavailable
from telephony_agent.records.store import RecordStore, open_store
from telephony_agent.records.urls import short_reason

T = TypeVar("T")


class RecordReader:
    """Read-only access to call records; safe to share between threads."""

    def __init__(self, store: RecordStore) -> None:
        self._store = store
        # One connection, many worker threads: one query at a time on it.
        self._lock = threading.Lock()

    @property
    def shown_url(self) -> str:
        """The database URL with its password masked."""
        return self._store.shown_url

    def list_calls(
        self,
        *,
        limit: int = 20,
        before: str | None = None,
        since: float | None = None,
        profile: str | None = None,
    ) -> list[dict[str, Any]]:
        """Calls newest first; `before` (a call id) pages to older ones."""
        with self._lock:
            return self._retrying(
                lambda: self._store.list_calls(
                    limit=limit, before=before, since=since, profile=profile
                )
            )

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        """One call by id, external id, or unique id prefix (at least 6 characters)."""
        with self._lock:
            return self._retrying(lambda: self._store.get_call(call_id))

    async def alist_calls(
        self,
        *,
        limit: int = 20,
        before: str | None = None,
        since: float | None = None,
        profile: str | None = None,
    ) -> list[dict[str, Any]]:
        """`list_calls` in a worker thread."""
        return await asyncio.to_thread(
            lambda: self.list_calls(limit=limit, before=before, since=since, profile=profile)
        )

    async def aget_call(self, call_id: str) -> dict[str, Any] | None:
        """`get_call` in a worker thread."""
        return await asyncio.to_thread(self.get_call, call_id)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._store.close()

    def _retrying(self, query: Callable[[], T]) -> T:
        """Run a query; after a transient failure (a restarted server) reconnect once."""
        try:
            return query()
        except Exception as exc:
            if not self._store.is_transient(exc):
                raise
        try:
            self._store.recover()
            return query()
        except RecordsError:
            raise
        except Exception as exc:
            if not self._store.is_transient(exc):
                raise
            raise RecordsUnavailable(
                f"records database {self.shown_url} is unavailable: {short_reason(exc)}"
            ) from None


def open_reader(url: str, base_dir: Path | None = None) -> RecordReader:
    """Open `records.database` for reading (RecordsError, RecordsUnavailable on failure)."""
    return RecordReader(open_store(url, base_dir=base_dir, read_only=True))
