"""Per-address INVITE rate, pending calls per address and in total: decisions and tables."""

from __future__ import annotations

import pytest

from telephony_agent.server.sip_limits import PendingLimits


def limits(**overrides: float) -> PendingLimits:
    values: dict[str, float] = {"per_source": 3, "total": 5, "rate_per_s": 10.0}
    values.update(overrides)
    return PendingLimits(
        per_source=int(values["per_source"]),
        total=int(values["total"]),
        rate_per_s=values["rate_per_s"],
        max_sources=int(values.get("max_sources", 10_000)),
    )


def test_a_burst_of_twice_the_rate_passes_then_the_rate_holds() -> None:
    limit = limits(per_source=1000, total=1000, rate_per_s=10.0)
    verdicts = [limit.check("198.51.100.1", 0.0) for _ in range(25)]
    assert verdicts.count("ok") == 20
    assert verdicts[20:] == ["rate"] * 5
    assert limit.check("198.51.100.1", 0.1) == "ok"  # one token back after 100 ms
    assert limit.check("198.51.100.1", 0.1) == "rate"
    assert limit.check("198.51.100.2", 0.1) == "ok"  # another address has its own bucket
    assert limit.stats.refused_rate == 6


def test_pending_calls_per_address_and_in_total() -> None:
    limit = limits()
    for _ in range(3):
        assert limit.check("a", 0.0) == "ok"
        limit.started("a")
    assert limit.check("a", 0.0) == "source_pending"
    for _ in range(2):
        assert limit.check("b", 0.0) == "ok"
        limit.started("b")
    assert limit.check("c", 0.0) == "pending"
    assert (limit.pending, limit.pending_from("a")) == (5, 3)
    limit.settled("a")
    assert limit.check("a", 0.0) == "ok"
    assert limit.stats.refused_source_pending == 1
    assert limit.stats.refused_pending == 1


def test_settling_more_than_started_changes_nothing() -> None:
    limit = limits()
    limit.started("a")
    limit.settled("a")
    limit.settled("a")
    limit.settled("never-seen")
    assert limit.pending == 0
    assert limit.pending_from("a") == 0


def test_tables_empty_again_once_calls_settle_and_buckets_refill() -> None:
    limit = limits(per_source=100, total=100_000, rate_per_s=50.0)
    for n in range(1000):
        source = f"10.0.{n // 250}.{n % 250}"
        assert limit.check(source, 0.0) == "ok"
        limit.started(source)
    for n in range(1000):
        limit.settled(f"10.0.{n // 250}.{n % 250}")
    assert limit.pending == 0
    # Each later INVITE forgets one refilled bucket: a quiet stretch empties the table.
    for _ in range(1000):
        limit.check("192.0.2.9", 60.0)
    assert limit.tracked_sources <= 2


def test_the_rate_table_is_bounded_under_a_spoofed_flood() -> None:
    limit = limits(per_source=100, total=100_000, rate_per_s=1.0, max_sources=64)
    for n in range(10_000):
        limit.check(f"203.0.113.{n % 250}:{n}", 0.0)
    assert limit.tracked_sources <= 64


@pytest.mark.parametrize(
    "bad", [{"per_source": 0}, {"total": 0}, {"rate_per_s": 0.0}, {"max_sources": 0}]
)
def test_limits_must_be_positive(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        limits(**bad)
