"""What only PostgreSQL does: a server that is down, or drops our connection mid-service."""

from __future__ import annotations

import socket

import pytest
from structlog.testing import capture_logs

from telephony_agent.records import (
    RecordsError,
    RecordsUnavailable,
    RecordWriter,
    open_reader,
    open_store,
)
from tests.records.postgres import PASSWORD, PostgresServer
from tests.records.support import (
    CALL,
    INSTANCE,
    expected_full_call,
    full_call,
    offered,
    raw,
    wait_for,
)

pytestmark = pytest.mark.postgres


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kill_our_connections(url: str) -> int:
    """What a server restart or a network cut does to the store's connection."""
    rows = raw(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'telephony-agent' AND pid <> pg_backend_pid()",
    )
    return len(rows)


def test_an_unreachable_server_is_one_line_without_the_password() -> None:
    port = _closed_port()
    url = f"postgresql://agent:{PASSWORD}@127.0.0.1:{port}/calls"
    with pytest.raises(RecordsUnavailable) as caught:
        open_store(url)
    assert str(caught.value) == (
        f"records database postgresql://agent:***@127.0.0.1:{port}/calls is unreachable:"
        " Connection refused"
    )
    with pytest.raises(RecordsUnavailable, match=r"Connection refused$"):
        RecordWriter(url, instance=INSTANCE).open()
    with pytest.raises(RecordsUnavailable, match=r"Connection refused$"):
        open_reader(url)


def test_a_missing_database_is_unavailable_too(postgres_server: PostgresServer) -> None:
    url = postgres_server.url("no_such_database")
    with pytest.raises(RecordsUnavailable) as caught:
        open_store(url)
    assert str(caught.value) == (
        f"records database {postgres_server.url('no_such_database', password='***')}"
        ' is unreachable: database "no_such_database" does not exist'
    )


def test_a_reader_refuses_a_database_nobody_has_migrated(postgres_url: str) -> None:
    with pytest.raises(RecordsError, match=r"has schema version 0, older than this"):
        open_reader(postgres_url)


async def test_the_writer_reconnects_when_its_connection_is_cut(postgres_url: str) -> None:
    writer = RecordWriter(postgres_url, instance=INSTANCE)
    writer.open()
    events = full_call()
    with capture_logs() as logs:
        for event in events[:5]:
            writer.submit(event)
        wait_for(lambda: writer.stats.written == 5)
        assert _kill_our_connections(postgres_url) == 1
        for event in events[5:]:
            writer.submit(event)
        wait_for(lambda: writer.stats.written == len(events))
    await writer.close()

    assert writer.stats.failed_attempts >= 1
    assert writer.stats.dropped == writer.stats.rejected == 0
    assert [e["event"] for e in logs][:1] == ["records_write_failed"]
    assert PASSWORD not in repr(logs)
    assert PASSWORD not in str(writer.stats.last_error)
    reader = open_reader(postgres_url)
    try:
        assert reader.get_call(CALL) == expected_full_call()
    finally:
        reader.close()


def test_a_reader_reconnects_once_when_its_connection_is_cut(postgres_url: str) -> None:
    store = open_store(postgres_url)
    store.apply(offered())
    store.close()
    reader = open_reader(postgres_url)
    try:
        assert len(reader.list_calls()) == 1
        assert _kill_our_connections(postgres_url) == 1
        assert len(reader.list_calls()) == 1
    finally:
        reader.close()
