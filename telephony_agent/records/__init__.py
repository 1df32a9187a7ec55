"""Call records: every call written to SQLite or PostgreSQL as it happens.

The switchboard's events go to a `RecordWriter` (a queue and a thread of its own, so the
media loop never waits for the database); the CLI and the HTTP API read them back with a
`RecordReader`. Both take the `records.database` URL.
"""

from __future__ import annotations

from telephony_agent.records.errors import RecordsError, RecordsUnavailable
from telephony_agent.records.events import (
    BargeInRecorded,
    CallAnswered,
    CallEnded,
    CallOffered,
    DtmfEntered,
    RecordEvent,
    RecordingChanged,
    ToolCalled,
    TranscriptAdded,
    TurnMeasured,
)
from telephony_agent.records.queries import RecordReader, open_reader
from telephony_agent.records.schema import LATEST_VERSION
from telephony_agent.records.shape import iso_utc
from telephony_agent.records.store import RecordStore, open_store
from telephony_agent.records.urls import redact_url, url_password
from telephony_agent.records.writer import RecordWriter, WriterStats

__all__ = [
    "LATEST_VERSION",
    "BargeInRecorded",
    "CallAnswered",
    "CallEnded",
    "CallOffered",
    "DtmfEntered",
    "RecordEvent",
    "RecordReader",
    "RecordStore",
    "RecordWriter",
    "RecordingChanged",
    "RecordsError",
    "RecordsUnavailable",
    "ToolCalled",
    "TranscriptAdded",
    "TurnMeasured",
    "WriterStats",
    "iso_utc",
    "open_reader",
    "open_store",
    "redact_url",
    "url_password",
]
