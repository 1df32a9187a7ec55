"""The records writer: never blocks the submitter, keeps order, retries, flushes, drops last."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
from structlog.testing import capture_logs

from telephony_agent.records import (
    CallEnded,
    RecordEvent,
    RecordsError,
    RecordStore,
    RecordWriter,
    TranscriptAdded,
    open_reader,
    open_store,
)
from telephony_agent.records.sqlite_store import SqliteRecordStore
from telephony_agent.records.urls import SqliteTarget, parse_database_url
from tests.records.support import (
    CALL,
    INSTANCE,
    T0,
    expected_full_call,
    full_call,
    offered,
    wait_for,
)


class GatedStore(SqliteRecordStore):
    """Applies an event only once the test opens the gate; tells when one is waiting."""

    gate: ClassVar[threading.Event]
    waiting: ClassVar[threading.Event]

    def apply(self, event: RecordEvent) -> None:
        self.waiting.set()
        self.gate.wait(10)
        super().apply(event)


class ImpatientStore(SqliteRecordStore):
    """Gives up on another connection's write lock after 50 ms instead of 5 s."""

    busy_timeout_ms = 50


class BrokenStore(SqliteRecordStore):
    """A database that fails every write the way a locked one does."""

    def apply(self, event: RecordEvent) -> None:
        raise sqlite3.OperationalError("disk I/O error")


class WriterWith(RecordWriter):
    """A writer that opens one of the stores above instead of the plain one."""

    store_class: type[SqliteRecordStore] = SqliteRecordStore

    def _open_store(self) -> RecordStore:
        target = parse_database_url(self.url)
        assert isinstance(target, SqliteTarget)
        return self.store_class.open(target)


def _writer(url: str, store_class: type[SqliteRecordStore], max_queue: int = 20000) -> WriterWith:
    writer = WriterWith(url, instance=INSTANCE, max_queue=max_queue)
    writer.store_class = store_class
    return writer


@pytest.fixture
def gated() -> type[GatedStore]:
    GatedStore.gate = threading.Event()
    GatedStore.waiting = threading.Event()
    return GatedStore


async def test_events_are_written_in_order_and_flushed_on_close(sqlite_url: str) -> None:
    writer = RecordWriter(sqlite_url, instance=INSTANCE)
    writer.open()
    for event in full_call():
        writer.submit(event)
    await writer.close()

    assert writer.stats.submitted == writer.stats.written == len(full_call())
    assert writer.stats.queue_depth == 0
    reader = open_reader(sqlite_url)
    try:
        assert reader.get_call(CALL) == expected_full_call()
    finally:
        reader.close()


async def test_submit_never_waits_for_a_slow_database(
    sqlite_url: str, gated: type[GatedStore]
) -> None:
    writer = _writer(sqlite_url, gated)
    writer.open()
    started = time.perf_counter()
    for n in range(2000):
        writer.submit(offered(f"call-{n}", at=T0 + n))
    elapsed = time.perf_counter() - started

    # The first apply is held for up to 10 s: any waiting in submit would show here.
    assert gated.waiting.wait(5)
    assert elapsed < 1.0, f"2000 submits took {elapsed:.2f} s"
    assert writer.stats.written == 0
    assert writer.stats.queue_depth >= 1999
    gated.gate.set()
    await writer.close()
    assert writer.stats.written == 2000


async def test_a_full_queue_drops_counts_and_warns_once(
    sqlite_url: str, gated: type[GatedStore]
) -> None:
    writer = _writer(sqlite_url, gated, max_queue=5)
    writer.open()
    writer.submit(offered("first"))
    assert gated.waiting.wait(5)  # the thread holds "first"; the queue is empty again
    with capture_logs() as logs:
        for n in range(10):
            writer.submit(offered(f"call-{n}", at=T0 + n))

    assert writer.stats.dropped == 5
    assert writer.stats.queue_depth == 5
    assert [e["event"] for e in logs] == ["records_queue_full"]
    assert logs[0]["dropped"] == 1
    gated.gate.set()
    await writer.close()
    assert (writer.stats.submitted, writer.stats.written, writer.stats.dropped) == (11, 6, 5)


async def test_a_locked_database_is_retried_until_it_frees_up(sqlite_url: str) -> None:
    writer = _writer(sqlite_url, ImpatientStore)
    writer.open()
    path = parse_database_url(sqlite_url).shown.removeprefix("sqlite:///")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with capture_logs() as logs:
            for event in full_call():
                writer.submit(event)
            wait_for(lambda: writer.stats.failed_attempts >= 2)
            assert writer.stats.written == 0
            blocker.execute("COMMIT")
            wait_for(lambda: writer.stats.written == len(full_call()))
    finally:
        blocker.close()
    await writer.close()

    failures = [e for e in logs if e["event"] == "records_write_failed"]
    assert failures
    assert failures[0]["error"] == "OperationalError"
    assert failures[0]["reason"] == "OperationalError: database is locked"
    assert [e["retry_in_s"] for e in failures[:2]] == [0.1, 0.2]
    assert writer.stats.last_error == "OperationalError: database is locked"
    assert writer.stats.dropped == 0
    reader = open_reader(sqlite_url)
    try:
        assert reader.get_call(CALL) == expected_full_call()
    finally:
        reader.close()


async def test_an_event_the_database_refuses_is_skipped_not_retried(sqlite_url: str) -> None:
    writer = RecordWriter(sqlite_url, instance=INSTANCE)
    writer.open()
    bad = TranscriptAdded(CALL, 0, None, "no speaker", 0, 1, False)  # type: ignore[arg-type]
    with capture_logs() as logs:
        writer.submit(offered())
        writer.submit(bad)
        writer.submit(TranscriptAdded(CALL, 1, "agent", "still here", 0, 1, False))
        await writer.close()

    assert (writer.stats.written, writer.stats.rejected, writer.stats.failed_attempts) == (2, 1, 0)
    rejected = [e for e in logs if e["event"] == "records_event_rejected"]
    assert len(rejected) == 1
    assert rejected[0]["error"] == "IntegrityError"
    assert rejected[0]["call_id"] == CALL


async def test_close_gives_up_on_a_dead_database_after_its_timeout(sqlite_url: str) -> None:
    writer = _writer(sqlite_url, BrokenStore)
    writer.open()
    for n in range(50):
        writer.submit(offered(f"call-{n}"))
    started = time.monotonic()
    with capture_logs() as logs:
        await writer.close(timeout_s=0.5)

    assert time.monotonic() - started < 2.0
    assert writer.stats.written == 0
    assert writer.stats.dropped == 50
    assert writer.stats.failed_attempts >= 2
    incomplete = [e for e in logs if e["event"] == "records_flush_incomplete"]
    assert [e["dropped"] for e in incomplete] == [50]
    writer.submit(offered("after-close"))  # counted, not raised
    assert writer.stats.dropped == 51


async def test_open_closes_the_calls_a_crash_left_open(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    store.apply(offered("left-open"))
    store.apply(offered("other-host", instance="host-b"))
    store.close()

    writer = RecordWriter(sqlite_url, instance=INSTANCE)
    writer.open()
    await writer.close()

    assert writer.crashed == ["left-open"]


async def test_prune_runs_in_the_writer_thread(sqlite_url: str) -> None:
    now = time.time()
    writer = RecordWriter(sqlite_url, instance=INSTANCE)
    writer.open()
    for event in full_call("old", at=now - 40 * 86400):
        writer.submit(event)
    writer.submit(offered("recent", at=now - 86400))
    writer.submit(CallEnded("recent", now - 86000, "bye", "caller", answered=False))

    assert await writer.prune(30) == ["/rec/old.wav"]
    with pytest.raises(RecordsError, match=r"^records.retention_days = 0: expected"):
        await writer.prune(0)
    await writer.close()
    reader = open_reader(sqlite_url)
    try:
        assert [c["id"] for c in reader.list_calls()] == ["recent"]
    finally:
        reader.close()


def test_open_reports_the_store_error_to_its_caller(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    writer = RecordWriter("sqlite:///taken/calls.db", base_dir=tmp_path, instance=INSTANCE)
    with pytest.raises(RecordsError, match="cannot create directory"):
        writer.open()
    writer.submit(offered())  # still never raises
    writer.close_sync()
