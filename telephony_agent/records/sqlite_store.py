"""The SQLite records store: the default, a file next to the service, no server.

Why these settings: WAL lets the CLI and the HTTP API read while `serve` writes, and
with WAL `synchronous=NORMAL` loses nothing when the process crashes (only a power cut
can cost the last transactions), at a fraction of FULL's fsyncs. The writer's connection
is used only by the thread that opened it (sqlite3 enforces that); readers open their own
read-only connection, which a lock lets several threads share.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Self

from telephony_agent.records.db import SQLITE, Row
from telephony_agent.records.errors import RecordsError, RecordsUnavailable
from telephony_agent.records.schema import migrate, require_current
from telephony_agent.records.sql import SqlRecordStore
from telephony_agent.records.urls import SqliteTarget, short_reason

#: Pause between attempts to open a database another process is switching to WAL.
_OPEN_RETRY_S = 0.02


class _Sqlite:
    """`Executor` over one sqlite3 connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(r) for r in self._conn.execute(sql, tuple(params)).fetchall()]

    def change(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, tuple(params)).rowcount


class SqliteRecordStore(SqlRecordStore):
    """Records in one SQLite file (WAL, synchronous=NORMAL)."""

    #: How long a statement (or opening the database) waits for another connection's
    #: lock before failing.
    busy_timeout_ms: ClassVar[int] = 5000

    def __init__(self, target: SqliteTarget, conn: sqlite3.Connection) -> None:
        super().__init__(target.shown)
        self.path = target.path
        self._conn = conn
        self._db = _Sqlite(conn)

    @classmethod
    def open(cls, target: SqliteTarget, *, read_only: bool = False) -> Self:
        """Connect and bring the schema up to date (a reader only checks it)."""
        path = target.path
        if read_only and not path.is_file():
            raise RecordsError(
                f"records database {target.shown} does not exist ({path}):"
                " no call has been recorded there (records.database)"
            )
        if not read_only:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RecordsError(
                    f"records database {target.shown}: cannot create directory"
                    f" {path.parent}: {exc.strerror or exc}"
                ) from None
        # Processes opening one new database together (`serve --workers K` starting)
        # can be told "locked" without the busy timeout being applied: the switch to
        # write-ahead logging and its first recovery take the lock without waiting.
        # That lasts milliseconds, so an open that meets it tries again, for as long
        # as a statement would wait.
        deadline = time.monotonic() + cls.busy_timeout_ms / 1000
        while True:
            try:
                return cls._open_once(target, read_only=read_only)
            except sqlite3.Error as exc:
                locked = _is_lock(exc)
                if locked and time.monotonic() < deadline:
                    time.sleep(_OPEN_RETRY_S)
                    continue
                error = RecordsUnavailable if locked else RecordsError
                raise error(
                    f"records database {target.shown}: cannot open {path}: {short_reason(exc)}"
                ) from None

    @classmethod
    def _open_once(cls, target: SqliteTarget, *, read_only: bool) -> Self:
        conn = cls._connect(target, read_only=read_only)
        try:
            store = cls(target, conn)
            with store._transaction(write=not read_only) as db:
                if read_only:
                    require_current(db, SQLITE, target.shown)
                else:
                    migrate(db, SQLITE, target.shown)
            return store
        except BaseException:
            conn.close()
            raise

    @classmethod
    def _connect(cls, target: SqliteTarget, *, read_only: bool) -> sqlite3.Connection:
        timeout_s = cls.busy_timeout_ms / 1000
        if read_only:
            conn = sqlite3.connect(
                f"{target.path.as_uri()}?mode=ro",
                uri=True,
                timeout=timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        else:
            conn = sqlite3.connect(str(target.path), timeout=timeout_s, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(cls.busy_timeout_ms)}")
            if not read_only:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise RecordsError(
                        f"records database {target.shown}: {target.path} cannot use"
                        f" write-ahead logging (journal_mode is {mode}): put it on a local disk"
                    )
                conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[_Sqlite]:
        # IMMEDIATE takes the write lock up front, so a busy database fails (or waits) at
        # BEGIN instead of half-way through the event.
        self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield self._db
            self._conn.execute("COMMIT")
        except BaseException:
            self.recover()
            raise

    def journal_mode(self) -> str:
        """The connection's journal mode (`wal` for every store this class opens)."""
        return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()

    def is_transient(self, exc: BaseException) -> bool:
        # Locked, busy, disk full, I/O errors: all OperationalError, all worth a retry.
        return isinstance(exc, sqlite3.OperationalError | RecordsUnavailable)

    def recover(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the next BEGIN reports whatever is still wrong

    def close(self) -> None:
        self._conn.close()


def _is_lock(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text
