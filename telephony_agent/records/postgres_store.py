"""The PostgreSQL records store, for several instances or many calls.

Why psycopg 3 with a plain synchronous connection: the store is only ever used from the
records writer's own thread (or a reader's worker thread), never from the event loop,
so an asyncio driver would add a second event loop and buy nothing. A sync connection in
that thread keeps the media loop free whatever the database does.

Why autocommit with explicit `transaction()` blocks: each event is its own short
transaction, and a connection left idle between events must not hold one open.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Self

import psycopg
from psycopg import pq

from telephony_agent.records.db import POSTGRES, Row
from telephony_agent.records.errors import RecordsError, RecordsUnavailable
from telephony_agent.records.schema import migrate, require_current
from telephony_agent.records.sql import SqlRecordStore
from telephony_agent.records.urls import PostgresTarget, short_reason

_WHITESPACE = re.compile(r"\s+")


class _Postgres:
    """`Executor` over one psycopg connection; turns our `?` marks into `%s`."""

    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self._conn = conn

    def _execute(self, sql: str, params: Sequence[Any]) -> psycopg.Cursor[Row]:
        if not params:
            return self._conn.execute(sql)
        return self._conn.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(params))

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = self._execute(sql, params)
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []

    def change(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._execute(sql, params).rowcount


class PostgresRecordStore(SqlRecordStore):
    """Records in a PostgreSQL database (one connection, reconnected when it breaks)."""

    connect_timeout_s: ClassVar[int] = 5
    statement_timeout_ms: ClassVar[int] = 30000

    def __init__(self, target: PostgresTarget, *, read_only: bool) -> None:
        super().__init__(target.shown)
        self._target = target
        self._read_only = read_only
        self._conn = self._connect()

    @classmethod
    def open(cls, target: PostgresTarget, *, read_only: bool = False) -> Self:
        """Connect and bring the schema up to date (a reader only checks it)."""
        store = cls(target, read_only=read_only)
        try:
            with store._transaction(write=not read_only) as db:
                if read_only:
                    require_current(db, POSTGRES, target.shown)
                else:
                    migrate(db, POSTGRES, target.shown)
        except psycopg.OperationalError as exc:
            store.close()
            raise RecordsUnavailable(
                f"records database {target.shown} failed while opening: {store._reason(exc)}"
            ) from None
        except psycopg.Error as exc:
            store.close()
            raise RecordsError(
                f"records database {target.shown}: cannot set up the schema: {store._reason(exc)}"
            ) from None
        except BaseException:
            store.close()
            raise
        return store

    def _connect(self) -> psycopg.Connection[Row]:
        try:
            conn = psycopg.connect(
                self._target.conninfo,
                autocommit=True,
                connect_timeout=self.connect_timeout_s,
                application_name="telephony-agent",
            )
        except psycopg.Error as exc:
            raise RecordsUnavailable(
                f"records database {self._target.shown} is unreachable: {self._reason(exc)}"
            ) from None
        conn.read_only = self._read_only
        try:
            # A write stuck behind someone's lock fails (and is retried) instead of
            # holding the writer thread indefinitely.
            conn.execute(f"SET statement_timeout = {self.statement_timeout_ms}")
        except psycopg.Error as exc:
            conn.close()
            raise RecordsUnavailable(
                f"records database {self._target.shown} is unreachable: {self._reason(exc)}"
            ) from None
        return conn

    def _reason(self, exc: BaseException) -> str:
        """A few words: libpq's last clause ("Connection refused"), password masked."""
        text = short_reason(exc, (self._target.password,)).split(": ", 1)[-1]
        text = text.rsplit(" failed: ", 1)[-1]
        text = _WHITESPACE.sub(" ", text.removeprefix("FATAL:")).strip()
        return text or type(exc).__name__

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[_Postgres]:
        # psycopg rolls the transaction back itself when the block raises.
        with self._conn.transaction():
            yield _Postgres(self._conn)

    def is_transient(self, exc: BaseException) -> bool:
        # Lost connections, shutdowns, serialization failures, a full disk: retry later.
        # Data the database refuses (DataError, IntegrityError) would fail forever.
        return isinstance(
            exc, psycopg.OperationalError | psycopg.InterfaceError | RecordsUnavailable
        )

    def recover(self) -> None:
        if self._conn.closed or self._conn.broken:
            self._conn.close()
            self._conn = self._connect()
            return
        if self._conn.info.transaction_status != pq.TransactionStatus.IDLE:
            try:
                self._conn.rollback()
            except psycopg.Error:
                self._conn.close()
                self._conn = self._connect()

    def close(self) -> None:
        self._conn.close()
