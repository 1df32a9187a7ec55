"""`--find-max`: doubling, then bisecting, on a fake run with a known knee."""

from __future__ import annotations

from collections.abc import Callable

from telephony_agent.bench.report import Row
from telephony_agent.bench.search import find_max


def _run_with_knee(knee: int, tried: list[int]) -> Callable[[int], Row]:
    def run(calls: int) -> Row:
        tried.append(calls)
        clean = calls <= knee
        return {
            "calls": calls,
            "answered": calls,
            "jitter_p99_ms": 1.0 if clean else 9.0,
            "gaps_over_40ms": 0,
            "lost_packets": 0,
            "reached_percent": 100.0,
            "inbound_p99_ms": 5.0,
        }

    return run


def test_doubles_to_the_first_failure_then_bisects_towards_the_knee() -> None:
    tried: list[int] = []
    best, rows = find_max(_run_with_knee(130, tried))
    assert tried[:4] == [25, 50, 100, 200]
    assert tried[4:] == [150, 125, 137]
    assert best == 125
    assert [row["within_bound"] for row in rows] == [True, True, True, False, False, True, False]


def test_a_first_run_over_the_bound_bisects_below_it() -> None:
    tried: list[int] = []
    best, _ = find_max(_run_with_knee(10, tried))
    assert tried == [25, 12, 6, 9]
    assert best == 9
