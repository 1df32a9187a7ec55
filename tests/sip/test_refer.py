"""Transfer progress from REFER answers and NOTIFY sipfrag bodies."""

from __future__ import annotations

import pytest

from telephony_agent.sip.refer import TransferProgress, parse_sipfrag, reason_for_status


def test_progress_to_success() -> None:
    progress = TransferProgress()
    assert not progress.refer_answered(202).done
    assert not progress.notify(b"SIP/2.0 100 Trying\r\n", "active;expires=60").done
    assert not progress.notify(b"SIP/2.0 180 Ringing\r\n", "active;expires=60").done
    outcome = progress.notify(b"SIP/2.0 200 OK\r\n", "terminated;reason=noresource")
    assert (outcome.done, outcome.succeeded, outcome.status) == (True, True, 200)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (486, "busy"),
        (603, "declined"),
        (404, "not_found"),
        (408, "no_answer"),
        (480, "unavailable"),
    ],
)
def test_failures_carry_a_reason(status: int, reason: str) -> None:
    progress = TransferProgress()
    progress.refer_answered(202)
    outcome = progress.notify(f"SIP/2.0 {status} Whatever\r\n".encode(), "terminated")
    assert (outcome.done, outcome.succeeded, outcome.reason) == (True, False, reason)


def test_refer_refused_and_silent_endings() -> None:
    assert TransferProgress().refer_answered(501).reason == "refer_not_supported"
    assert TransferProgress().refer_answered(403).reason == "declined"
    progress = TransferProgress()
    progress.refer_answered(202)
    assert progress.notify(b"garbage", "terminated").reason == "no_outcome"
    waiting = TransferProgress()
    waiting.refer_answered(202)
    waiting.notify(b"SIP/2.0 180 Ringing", "active")
    outcome = waiting.timed_out()
    assert (outcome.reason, outcome.status) == ("no_answer", 180)


def test_sipfrag_parsing_is_bounded_and_strict() -> None:
    assert parse_sipfrag(b"SIP/2.0 183 Session Progress\r\nContent-Length: 0") == 183
    assert parse_sipfrag(b"HTTP/1.1 200 OK") is None
    assert parse_sipfrag(b"") is None
    assert parse_sipfrag(b"SIP/2.0 2000 OK") is None
    assert reason_for_status(699) == "failed_699"


@pytest.mark.parametrize("status", [403, 405, 420, 488, 501])
def test_a_refused_refer_is_marked_so_a_fallback_may_apply(status: int) -> None:
    outcome = TransferProgress().refer_answered(status)
    assert (outcome.done, outcome.succeeded, outcome.refused) == (True, False, True)


def test_a_failure_after_the_refer_was_accepted_is_not_a_refusal() -> None:
    assert not TransferProgress().refer_answered(486).refused
    progress = TransferProgress()
    progress.refer_answered(202)
    assert not progress.notify(b"SIP/2.0 486 Busy Here", "terminated").refused
    unanswered = TransferProgress().refer_unanswered()
    assert (unanswered.refused, unanswered.reason, unanswered.status) == (
        True,
        "refer_unanswered",
        None,
    )
