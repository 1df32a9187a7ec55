"""Fixtures: a records database of each kind, fresh for every test.

Why both databases for the same tests: `store_url` runs every store test against SQLite
and a real PostgreSQL server, so the two cannot answer the same question differently.
Without the server binaries the PostgreSQL half fails under CI and is skipped elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from telephony_agent.records import RecordStore, open_store
from tests.records.postgres import PostgresServer, find_bin_dir, missing_reason, running_postgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail(missing_reason(), pytrace=False)
        pytest.skip(missing_reason())
    with running_postgres(bin_dir) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    name = postgres_server.create_database()
    yield name
    postgres_server.drop_database(name)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, postgres_database: str) -> Iterator[str]:
    """An empty schema of its own for each test, named in the URL's search_path."""
    schema = postgres_server.create_schema(postgres_database)
    yield postgres_server.url(postgres_database, schema=schema)
    postgres_server.drop_schema(postgres_database, schema)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'records' / 'calls.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def store(store_url: str) -> Iterator[RecordStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()


@pytest.fixture(autouse=True)
def _plain_structlog() -> Iterator[None]:
    """Structlog as a fresh process has it, so `capture_logs` sees info events even after
    a test elsewhere configured the service's logging (which filters below its level)."""
    config = structlog.get_config()
    structlog.reset_defaults()
    try:
        yield
    finally:
        structlog.configure(**config)
