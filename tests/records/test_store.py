"""The store contract, run against SQLite and a real PostgreSQL server alike."""

from __future__ import annotations

import sqlite3
import threading

import psycopg
import pytest

from telephony_agent.records import (
    LATEST_VERSION,
    CallEnded,
    RecordingChanged,
    RecordsError,
    RecordStore,
    TranscriptAdded,
    open_reader,
    open_store,
    redact_url,
)
from tests.records.support import (
    CALL,
    INSTANCE,
    T0,
    expected_full_call,
    full_call,
    offered,
    raw,
)


def test_every_event_reads_back_in_the_call_shape(store: RecordStore) -> None:
    for event in full_call():
        store.apply(event)

    assert store.get_call(CALL) == expected_full_call()
    listed = store.list_calls()
    whole = expected_full_call()
    for key in ("transcript", "tools", "barge_ins"):
        del whole[key]
    assert listed == [whole]


def test_applying_every_event_twice_leaves_the_rows_of_once(
    store: RecordStore, store_url: str
) -> None:
    for event in full_call():
        store.apply(event)
        store.apply(event)
    for event in full_call():  # a whole replay, as after a lost commit acknowledgement
        store.apply(event)

    assert store.get_call(CALL) == expected_full_call()
    assert raw(store_url, "SELECT turns FROM calls") == [(2,)]
    for table, count in (("transcript", 3), ("turns", 2), ("barge_ins", 1), ("tool_calls", 1)):
        assert raw(store_url, f"SELECT COUNT(*) FROM {table}") == [(count,)]


def test_lines_come_back_in_seq_order(store: RecordStore) -> None:
    store.apply(offered())
    for seq in (2, 0, 1):
        store.apply(TranscriptAdded(CALL, seq, "agent", f"line {seq}", seq * 10, seq * 10, False))

    call = store.get_call(CALL)
    assert call is not None
    assert [line["text"] for line in call["transcript"]] == ["line 0", "line 1", "line 2"]


def test_events_of_an_unknown_call_are_ignored(store: RecordStore, store_url: str) -> None:
    # Its CallOffered was dropped on a full queue: the rest must not fail or dangle.
    for event in full_call()[1:]:
        store.apply(event)

    assert store.list_calls() == []
    for table in ("calls", "transcript", "turns", "barge_ins", "tool_calls"):
        assert raw(store_url, f"SELECT COUNT(*) FROM {table}") == [(0,)]


def _ids(calls: list[dict[str, object]]) -> list[str]:
    return [str(c["id"]) for c in calls]


def test_listing_pages_newest_first_with_a_call_id_cursor(store: RecordStore) -> None:
    # Two calls share an offer time: the id breaks the tie, and paging must not skip one.
    times = {"a1": 10.0, "b2": 20.0, "c3": 30.0, "d4": 30.0, "e5": 40.0, "f6": 50.0}
    for call_id, at in times.items():
        store.apply(offered(call_id, at=T0 + at))

    pages = []
    cursor = None
    while True:
        page = store.list_calls(limit=2, before=cursor)
        if not page:
            break
        pages.append(_ids(page))
        cursor = str(page[-1]["id"])

    assert pages == [["f6", "e5"], ["d4", "c3"], ["b2", "a1"]]
    assert _ids(store.list_calls(limit=20)) == ["f6", "e5", "d4", "c3", "b2", "a1"]


def test_listing_filters_by_time_and_profile(store: RecordStore) -> None:
    store.apply(offered("a1", at=T0, profile="booking"))
    store.apply(offered("b2", at=T0 + 60, profile="support"))
    store.apply(offered("c3", at=T0 + 120, profile="booking"))

    assert _ids(store.list_calls(since=T0 + 60)) == ["c3", "b2"]
    assert _ids(store.list_calls(profile="booking")) == ["c3", "a1"]
    assert _ids(store.list_calls(profile="booking", since=T0 + 1)) == ["c3"]
    assert _ids(store.list_calls(profile="booking", before="c3")) == ["a1"]
    assert store.list_calls(profile="nobody") == []


def test_listing_refuses_a_bad_limit_and_an_unknown_cursor(store: RecordStore) -> None:
    with pytest.raises(RecordsError, match=r"^limit = 0: expected a whole number from 1"):
        store.list_calls(limit=0)
    with pytest.raises(RecordsError, match=r"^before = 'nope': no recorded call has that id$"):
        store.list_calls(before="nope")


def test_a_call_is_found_by_id_external_id_or_unique_prefix(store: RecordStore) -> None:
    store.apply(offered("0123456789abcdef", external_id="a84b4c76e66710@pc33.example.com"))
    store.apply(offered("0123459999999999", at=T0 + 1, external_id="other@example.com"))

    def found(ref: str) -> object:
        call = store.get_call(ref)
        return None if call is None else call["id"]

    assert found("0123456789abcdef") == "0123456789abcdef"
    assert found("a84b4c76e66710@pc33.example.com") == "0123456789abcdef"
    assert found("0123456") == "0123456789abcdef"
    assert found("01234") is None  # below 6 characters a prefix is not enough
    assert found("ffffffff") is None
    with pytest.raises(RecordsError, match=r"^call id '012345' is the start of more than one"):
        store.get_call("012345")


def test_crashed_calls_of_this_instance_end_at_their_last_event(
    store: RecordStore,
) -> None:
    # Ours, answered, mid-recording: ends at its last line (answer + 3.6 s on the call clock).
    for event in full_call("ours")[:6]:
        store.apply(event)
    # Ours, never answered: ends when it was offered.
    store.apply(offered("ringing", at=T0 + 5))
    # Ours, already ended: untouched.
    for event in full_call("done", at=T0 - 100):
        store.apply(event)
    # Another instance's live call on the same database: untouched.
    store.apply(offered("theirs", at=T0, instance="host-b"))

    closed = store.mark_crashed(T0 + 3600, instance=INSTANCE)

    assert sorted(closed) == ["ours", "ringing"]
    ours = store.get_call("ours")
    assert ours is not None
    assert ours["ended_at"] == "2023-11-14T22:13:24.600Z"
    assert (ours["end_reason"], ours["ended_by"]) == ("crashed", "crash")
    assert ours["duration_s"] == 3.6
    assert ours["recording_status"] == "partial"
    ringing = store.get_call("ringing")
    assert ringing is not None
    assert ringing["ended_at"] == "2023-11-14T22:13:25.000Z"
    assert ringing["duration_s"] == 0.0
    assert ringing["recording_status"] is None
    assert store.get_call("done") == {**expected_full_call("done"), **_times_of_done()}
    theirs = store.get_call("theirs")
    assert theirs is not None and theirs["ended_at"] is None
    assert store.mark_crashed(T0 + 3600, instance=INSTANCE) == []


def _times_of_done() -> dict[str, object]:
    return {
        "offered_at": "2023-11-14T22:11:40.000Z",
        "answered_at": "2023-11-14T22:11:41.000Z",
        "ended_at": "2023-11-14T22:12:11.500Z",
        "tools": [{**expected_full_call()["tools"][0], "started_at": "2023-11-14T22:11:46.000Z"}],
    }


def test_a_tool_call_moves_the_crash_time_to_its_end(store: RecordStore) -> None:
    offer, answer, *_, tool = full_call()[:9]  # the tool call is the last of these
    for event in (offer, answer, tool):
        store.apply(event)

    store.mark_crashed(T0 + 3600, instance=INSTANCE)

    call = store.get_call(CALL)
    assert call is not None
    assert call["ended_at"] == "2023-11-14T22:13:26.042Z"  # started_at + 42.5 ms


def test_prune_deletes_old_calls_with_their_lines(store: RecordStore, store_url: str) -> None:
    for event in full_call("old", at=T0 - 86400):
        store.apply(event)
    store.apply(offered("old-unrecorded", at=T0 - 86400))
    store.apply(CallEnded("old-unrecorded", T0 - 86000, "bye", "agent", answered=False))
    for event in full_call("new", at=T0):
        store.apply(event)
    store.apply(offered("live", at=T0 - 86400))  # still going: never pruned

    paths = store.prune(T0 - 3600)

    assert paths == ["/rec/old.wav"]
    assert sorted(_ids(store.list_calls())) == ["live", "new"]
    assert raw(store_url, "SELECT COUNT(*) FROM transcript WHERE call_id = 'old'") == [(0,)]
    assert raw(store_url, "SELECT COUNT(*) FROM transcript WHERE call_id = 'new'") == [(3,)]
    assert store.prune(T0 - 3600) == []


def test_reopening_keeps_the_data_and_the_version(store: RecordStore, store_url: str) -> None:
    store.apply(offered())
    store.close()

    again = open_store(store_url)
    try:
        assert _ids(again.list_calls()) == [CALL]
    finally:
        again.close()
    assert raw(store_url, "SELECT version FROM schema_version") == [(LATEST_VERSION,)]


def test_a_newer_schema_is_refused_in_one_line(store: RecordStore, store_url: str) -> None:
    store.close()
    raw(store_url, "UPDATE schema_version SET version = ?", (LATEST_VERSION + 1,))

    with pytest.raises(RecordsError) as caught:
        open_store(store_url)

    assert str(caught.value) == (
        f"records database {redact_url(store_url)} has schema version {LATEST_VERSION + 1},"
        f" newer than this telephony-agent understands ({LATEST_VERSION}): upgrade telephony-agent"
    )
    with pytest.raises(RecordsError, match="newer than this telephony-agent"):
        open_reader(store_url)


def test_the_reader_sees_what_the_store_wrote(store: RecordStore, store_url: str) -> None:
    for event in full_call():
        store.apply(event)
    reader = open_reader(store_url)
    try:
        assert reader.get_call(CALL) == expected_full_call()
        store.apply(RecordingChanged(CALL, "/elsewhere.wav", "complete"))
        assert [c["recording"] for c in reader.list_calls()] == ["/elsewhere.wav"]
    finally:
        reader.close()


def test_a_reader_cannot_write(store: RecordStore, store_url: str) -> None:
    reader = open_reader(store_url)
    try:
        with pytest.raises((sqlite3.Error, psycopg.Error), match=r"read-?only"):
            reader._store.apply(offered())
    finally:
        reader.close()


async def test_the_reader_answers_from_a_worker_thread(store: RecordStore, store_url: str) -> None:
    for event in full_call():
        store.apply(event)
    reader = open_reader(store_url)
    try:
        assert await reader.aget_call(CALL[:8]) == expected_full_call()
        assert _ids(await reader.alist_calls(profile="booking")) == [CALL]
    finally:
        reader.close()


def test_two_stores_opening_one_new_database_together_both_succeed(store_url: str) -> None:
    errors: list[BaseException] = []

    def open_use_close(n: int) -> None:
        try:
            opened = open_store(store_url)
            try:
                opened.apply(offered(f"call-{n}", at=T0 + n))
            finally:
                opened.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_use_close, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert raw(store_url, "SELECT version FROM schema_version") == [(LATEST_VERSION,)]
    assert raw(store_url, "SELECT COUNT(*) FROM calls") == [(4,)]
