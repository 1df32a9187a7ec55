"""When a session is rolled over, and how a standby connection's handshake is kept apart."""

from __future__ import annotations

import json

import pytest

from telephony_agent.realtime.rollover import (
    MAX_HELD_FRAMES,
    POLL_S,
    RolloverPolicy,
    StandbyHandshake,
)


def test_yandex_lifetime_windows() -> None:
    policy = RolloverPolicy(290.0)
    assert policy.prepare_after_s == 230.0  # a minute to find a pause
    assert policy.force_after_s == 285.0  # and five seconds of margin
    short = RolloverPolicy(4.0)
    assert short.prepare_after_s == 3.0
    assert short.force_after_s == pytest.approx(3.6)


@pytest.mark.parametrize(
    ("age", "standby", "quiet", "busy", "expected"),
    [
        (100.0, False, True, False, "wait"),  # too early for anything
        (231.0, False, True, False, "prepare"),  # open the next session first
        (231.0, True, True, False, "switch"),  # a pause: switch now
        (231.0, True, False, False, "wait"),  # someone is speaking: look again soon
        (286.0, True, False, False, "force"),  # no pause came: the last safe moment
        (286.0, True, False, True, "wait"),  # a response or tool is in flight: never cut it
        (286.0, False, False, False, "prepare"),
    ],
)
def test_decisions(age: float, standby: bool, quiet: bool, busy: bool, expected: str) -> None:
    policy = RolloverPolicy(290.0)
    assert policy.decide(age, standby_ready=standby, quiet=quiet, busy=busy) == expected


def test_next_check() -> None:
    policy = RolloverPolicy(290.0)
    assert policy.next_check_s(30.0) == 200.0
    assert policy.next_check_s(250.0) == POLL_S


def frame(kind: str, **fields: object) -> str:
    return json.dumps({"type": kind, **fields})


def test_standby_handshake_is_held_for_the_switch() -> None:
    standby = StandbyHandshake()
    standby.feed(frame("session.updated", session={}))  # before created: not ready
    assert not standby.ready
    standby.feed(frame("session.created", session={}))
    standby.feed(b"\x00binary")
    standby.feed("not json")
    standby.feed(frame("session.updated", session={}))
    assert standby.created and standby.ready and standby.failure is None
    assert len(standby.held) == 3  # readable frames only, in order
    for _ in range(MAX_HELD_FRAMES):
        standby.feed(frame("rate_limits.updated", rate_limits=[]))
    assert len(standby.held) == MAX_HELD_FRAMES
    assert standby.dropped == 3


def test_standby_error_fails_it() -> None:
    standby = StandbyHandshake()
    standby.feed(frame("session.created", session={}))
    standby.feed(frame("error", error={"message": "Instance with model x not found"}))
    assert standby.failure == "error before the switch: Instance with model x not found"


def test_standby_forced_ready_only_after_created() -> None:
    standby = StandbyHandshake()
    assert not standby.force_ready()
    standby.feed(frame("session.created", session={}))
    assert standby.force_ready() and standby.forced
    assert not standby.force_ready()
