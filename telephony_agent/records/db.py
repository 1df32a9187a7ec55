"""The little that differs between SQLite and PostgreSQL, and the one way we talk to both.

Why so small: every query in this package is written once, with `?` placeholders and
SQL both databases accept (`ON CONFLICT ... DO UPDATE`, `CASE`, `substr`), and runs
through an `Executor`. What cannot be shared — column types, how migrations are
serialised, how to ask whether a table exists — is data in a `Dialect`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Row = tuple[Any, ...]


class Executor(Protocol):
    """Runs one statement inside whatever transaction its owner has open."""

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a query and return every row."""

    def change(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement and return how many rows it changed."""


@dataclass(frozen=True)
class Dialect:
    """Per-database pieces: logical column types, a migration lock, a table probe."""

    name: str
    types: Mapping[str, str]
    #: A statement that makes concurrent migrations wait for each other (None: the
    #: transaction itself already does, as SQLite's BEGIN IMMEDIATE).
    migration_lock: str | None
    #: A query with one `?` (the table name) that returns a row when the table exists.
    table_exists: str


SQLITE = Dialect(
    name="sqlite",
    types={"text": "TEXT", "real": "REAL", "int": "INTEGER", "bool": "INTEGER"},
    migration_lock=None,
    table_exists="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
)

POSTGRES = Dialect(
    name="postgresql",
    types={"text": "TEXT", "real": "DOUBLE PRECISION", "int": "BIGINT", "bool": "BOOLEAN"},
    # Two instances starting together must not both create the tables.
    migration_lock="SELECT pg_advisory_xact_lock(7412094530021)",
    table_exists=(
        "SELECT 1 FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_name = ?"
    ),
)
