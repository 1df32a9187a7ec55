"""Events of made-up calls, and raw SQL on either database, for the records tests."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from telephony_agent.records import (
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
from telephony_agent.records.urls import SqliteTarget, parse_database_url

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
CALL = "c0ffee00112233445566778899aabbcc"
INSTANCE = "host-a"


def offered(
    call_id: str = CALL,
    *,
    at: float = T0,
    profile: str = "booking",
    instance: str = INSTANCE,
    external_id: str | None = None,
) -> CallOffered:
    return CallOffered(
        call_id=call_id,
        external_id=external_id if external_id is not None else f"sip-{call_id}@10.0.0.1",
        kind="sip",
        direction="inbound",
        caller="+442071838750",
        dialled="booking",
        profile=profile,
        provider="local",
        model=None,
        remote="10.0.0.1:5060",
        offered_at=at,
        instance=instance,
    )


def full_call(call_id: str = CALL, *, at: float = T0) -> list[RecordEvent]:
    """Every kind of event once or more, in the order a real call produces them."""
    return [
        offered(call_id, at=at),
        CallAnswered(call_id, answered_at=at + 1.0, codec="PCMU"),
        RecordingChanged(call_id, path=f"/rec/{call_id}.wav", status="recording"),
        TranscriptAdded(call_id, 0, "agent", "Good evening, Luigi's.", 0, 1500, False),
        TranscriptAdded(call_id, 1, "caller", "A table for two, please.", 2000, 3600, False),
        TurnMeasured(call_id, 0, at_ms=3600, to_first_delta_ms=310.5, to_first_frame_ms=332.0),
        BargeInRecorded(call_id, 0, at_ms=5200, item_id="item_7", played_ms=800, truncated=True),
        TranscriptAdded(call_id, 2, "agent", "For what", 4400, 5200, True),
        ToolCalled(
            call_id,
            0,
            name="check_availability",
            arguments='{"party": 2}',
            output='{"free": true}',
            ok=True,
            error=None,
            duration_ms=42.5,
            started_at=at + 6.0,
        ),
        TurnMeasured(call_id, 1, at_ms=6500, to_first_delta_ms=290.0, to_first_frame_ms=305.25),
        DtmfEntered(call_id, digits="45"),
        DtmfEntered(call_id, digits="4512#"),
        RecordingChanged(call_id, path=f"/rec/{call_id}.wav", status="complete", note="2 legs"),
        CallEnded(call_id, ended_at=at + 31.5, end_reason="bye", ended_by="caller", answered=True),
    ]


def expected_full_call(call_id: str = CALL) -> dict[str, Any]:
    """`full_call` as `get_call` must return it (at T0)."""
    return {
        "id": call_id,
        "sip_call_id": f"sip-{call_id}@10.0.0.1",
        "kind": "sip",
        "direction": "inbound",
        "from": "+442071838750",
        "to": "booking",
        "profile": "booking",
        "provider": "local",
        "model": None,
        "codec": "PCMU",
        "remote": "10.0.0.1:5060",
        "instance": INSTANCE,
        "offered_at": "2023-11-14T22:13:20.000Z",
        "answered_at": "2023-11-14T22:13:21.000Z",
        "ended_at": "2023-11-14T22:13:51.500Z",
        "duration_s": 30.5,
        "end_reason": "bye",
        "ended_by": "caller",
        "dtmf": "4512#",
        "turns": [
            {"at_ms": 3600, "to_first_delta_ms": 310.5, "to_first_frame_ms": 332.0},
            {"at_ms": 6500, "to_first_delta_ms": 290.0, "to_first_frame_ms": 305.25},
        ],
        "barge_ins": [{"at_ms": 5200, "item_id": "item_7", "played_ms": 800, "truncated": True}],
        "tools": [
            {
                "name": "check_availability",
                "arguments": '{"party": 2}',
                "output": '{"free": true}',
                "ok": True,
                "error": None,
                "duration_ms": 42.5,
                "started_at": "2023-11-14T22:13:26.000Z",
            }
        ],
        "transcript": [
            {
                "speaker": "agent",
                "text": "Good evening, Luigi's.",
                "start_ms": 0,
                "end_ms": 1500,
                "truncated": False,
            },
            {
                "speaker": "caller",
                "text": "A table for two, please.",
                "start_ms": 2000,
                "end_ms": 3600,
                "truncated": False,
            },
            {
                "speaker": "agent",
                "text": "For what",
                "start_ms": 4400,
                "end_ms": 5200,
                "truncated": True,
            },
        ],
        "recording": f"/rec/{call_id}.wav",
        "recording_status": "complete",
        "recording_note": "2 legs",
    }


def raw(url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the database behind `url`, outside any store, and commit."""
    target = parse_database_url(url)
    if isinstance(target, SqliteTarget):
        conn = sqlite3.connect(target.path)
        try:
            with conn:
                return [tuple(r) for r in conn.execute(sql, tuple(params)).fetchall()]
        finally:
            conn.close()
    with psycopg.connect(target.conninfo, autocommit=True) as pg:
        cursor = pg.execute(sql.replace("?", "%s"), tuple(params) or None)
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []


def wait_for(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    """Poll until `condition()` holds; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)
