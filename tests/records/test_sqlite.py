"""What only SQLite does: files, directories, WAL, and readers beside a writing service."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from telephony_agent.records import (
    RecordReader,
    RecordsError,
    RecordWriter,
    TranscriptAdded,
    open_reader,
    open_store,
)
from telephony_agent.records.sqlite_store import SqliteRecordStore
from tests.records.support import T0, offered, raw


def test_the_parent_directory_is_created_and_wal_is_on(tmp_path: Path) -> None:
    store = open_store("sqlite:///deep/er/calls.db", base_dir=tmp_path)
    try:
        assert isinstance(store, SqliteRecordStore)
        assert store.path == tmp_path / "deep" / "er" / "calls.db"
        assert store.journal_mode() == "wal"
    finally:
        store.close()
    # WAL is a property of the file: every later connection sees it.
    conn = sqlite3.connect(tmp_path / "deep" / "er" / "calls.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


def test_an_unwritable_directory_is_one_line(tmp_path: Path) -> None:
    # A file where a directory should be defeats even root, unlike permission bits.
    (tmp_path / "taken").write_text("not a directory")
    with pytest.raises(RecordsError) as caught:
        open_store("sqlite:///taken/calls.db", base_dir=tmp_path)
    message = str(caught.value)
    assert message.startswith(
        f"records database sqlite:///taken/calls.db: cannot create directory {tmp_path / 'taken'}:"
    )
    assert "\n" not in message


def test_a_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "calls.db").write_bytes(b"this is a WAV file, honestly" * 100)
    with pytest.raises(RecordsError) as caught:
        open_store("sqlite:///calls.db", base_dir=tmp_path)
    assert str(caught.value) == (
        f"records database sqlite:///calls.db: cannot open {tmp_path / 'calls.db'}:"
        " DatabaseError: file is not a database"
    )


def test_a_reader_needs_an_existing_up_to_date_database(tmp_path: Path) -> None:
    with pytest.raises(RecordsError, match=r"does not exist \(.*\): no call has been recorded"):
        open_reader("sqlite:///calls.db", base_dir=tmp_path)
    assert not (tmp_path / "calls.db").exists()  # and it did not create one

    sqlite3.connect(tmp_path / "calls.db").close()  # an empty file: schema version 0
    with pytest.raises(RecordsError) as caught:
        open_reader("sqlite:///calls.db", base_dir=tmp_path)
    assert str(caught.value) == (
        "records database sqlite:///calls.db has schema version 0, older than this"
        " telephony-agent uses (1): start `telephony-agent serve` with it once to upgrade it"
    )


def test_migrations_start_from_an_empty_file(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "calls.db").close()
    url = "sqlite:///calls.db"
    store = open_store(url, base_dir=tmp_path)
    store.close()
    absolute = f"sqlite:///{tmp_path / 'calls.db'}"
    tables = raw(absolute, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    assert [t[0] for t in tables] == [
        "barge_ins",
        "calls",
        "schema_version",
        "tool_calls",
        "transcript",
        "turns",
    ]
    assert raw(absolute, "SELECT version FROM schema_version") == [(1,)]


async def test_a_reader_sees_calls_while_the_writer_thread_writes(sqlite_url: str) -> None:
    writer = RecordWriter(sqlite_url, instance="host-a")
    writer.open()
    reader: RecordReader = open_reader(sqlite_url)
    seen: list[int] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def read_until_done() -> None:
        try:
            while not done.is_set():
                seen.append(len(reader.list_calls(limit=1000)))
        except BaseException as exc:
            failures.append(exc)

    watcher = threading.Thread(target=read_until_done)
    watcher.start()
    try:
        for n in range(300):
            call_id = f"call-{n:04d}"
            writer.submit(offered(call_id, at=T0 + n))
            writer.submit(TranscriptAdded(call_id, 0, "caller", "hello", 0, 500, False))
        await writer.close()
    finally:
        done.set()
        watcher.join()
    try:
        assert failures == []
        assert len(reader.list_calls(limit=1000)) == 300
        assert seen == sorted(seen)  # never goes backwards
        assert len(set(seen)) > 2  # the reader saw the table grow, not just before and after
    finally:
        reader.close()
