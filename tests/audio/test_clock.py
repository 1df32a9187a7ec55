"""MediaClock: tick count and spacing, shared ticks, failing callbacks, catch-up, resync."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import numpy as np
import pytest
from structlog.testing import capture_logs

from telephony_agent.audio.clock import MediaClock, Subscription


async def test_ticks_over_half_a_second_without_drift() -> None:
    loop = asyncio.get_running_loop()
    clock = MediaClock(20)
    seen: list[tuple[int, float]] = []
    started = loop.time()
    subscription = clock.subscribe(lambda tick: seen.append((tick, loop.time())))
    await asyncio.sleep(0.5)
    subscription.cancel()
    elapsed = loop.time() - started
    ticks = [tick for tick, _ in seen]
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))
    assert abs(len(ticks) - elapsed / 0.020) <= 2
    # Each tick ran `lateness` after its deadline, never before it, and those deadlines sit on
    # one exact 20 ms grid: a late tick does not push the following ones back (no drift).
    lateness_s = clock.lateness_ms / 1000.0
    assert lateness_s.size == len(seen)
    assert float(lateness_s.min()) >= 0.0
    assert float(np.median(lateness_s)) < 0.005
    deadlines = np.array([at for _, at in seen]) - lateness_s
    spacing = np.diff(deadlines)
    assert np.all(np.abs(spacing - 0.020) < 0.0005), spacing
    assert not clock.running


async def test_all_subscribers_run_in_the_same_tick() -> None:
    clock = MediaClock(10)
    order: list[tuple[str, int]] = []

    def recorder(name: str) -> Callable[[int], None]:
        return lambda tick: order.append((name, tick))

    subscriptions = [clock.subscribe(recorder(name)) for name in "abc"]
    await asyncio.sleep(0.1)
    for subscription in subscriptions:
        subscription.cancel()
    assert len(order) >= 3 * 5
    assert len(order) % 3 == 0
    for i in range(0, len(order), 3):
        group = order[i : i + 3]
        assert [name for name, _ in group] == ["a", "b", "c"]
        assert len({tick for _, tick in group}) == 1
    assert clock.subscriber_count == 0


async def test_failing_callback_is_logged_and_the_clock_keeps_going() -> None:
    clock = MediaClock(10)
    good: list[int] = []

    def broken(tick: int) -> None:
        raise RuntimeError(f"broken at {tick}")

    with capture_logs() as logs:
        bad = clock.subscribe(broken)
        ok = clock.subscribe(good.append)
        await asyncio.sleep(0.1)
    bad.cancel()
    ok.cancel()
    assert len(good) >= 5
    assert bad.failures >= 5
    failures = [entry for entry in logs if entry["event"] == "media_clock_callback_failed"]
    assert failures and failures[0]["log_level"] == "error"
    assert len(failures) < bad.failures  # repeated failures are not logged every tick


async def test_cancel_inside_a_callback_stops_only_that_subscriber() -> None:
    clock = MediaClock(10)
    calls: list[str] = []
    holder: dict[str, Subscription] = {}

    def once(tick: int) -> None:
        calls.append("once")
        holder["once"].cancel()

    holder["once"] = clock.subscribe(once)
    keep = clock.subscribe(lambda tick: calls.append("keep"))
    await asyncio.sleep(0.06)
    keep.cancel()
    assert calls.count("once") == 1
    assert calls.count("keep") >= 3


async def test_blocked_loop_catch_up_then_resync() -> None:
    loop = asyncio.get_running_loop()
    clock = MediaClock(10, max_catch_up=5)
    ticks: list[int] = []
    subscription = clock.subscribe(ticks.append)
    await asyncio.sleep(0.035)

    loop.call_soon(time.sleep, 0.045)  # ~4 ticks missed: all delivered back to back
    await asyncio.sleep(0.08)
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))
    assert clock.skipped_ticks == 0

    loop.call_soon(time.sleep, 0.15)  # ~15 ticks missed: 5 replayed, the rest skipped
    with capture_logs() as logs:
        await asyncio.sleep(0.06)
    subscription.cancel()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(gaps) > 1
    assert clock.skipped_ticks == sum(gap - 1 for gap in gaps)
    assert any(entry["event"] == "media_clock_resync" for entry in logs)
    # Ticks keep mapping to wall-clock deadlines: none lost beyond the skipped ones.
    stats = clock.lateness_stats()
    assert stats.count == len(ticks)
    assert stats.max_ms >= 5 * 10.0  # the oldest replayed tick was ~max_catch_up ticks late


async def test_lateness_stats() -> None:
    clock = MediaClock(10)
    assert clock.lateness_stats().count == 0
    subscription = clock.subscribe(lambda tick: None)
    await asyncio.sleep(0.1)
    subscription.cancel()
    stats = clock.lateness_stats()
    assert stats.count == clock.lateness_ms.size >= 5
    assert 0.0 <= stats.p50_ms <= stats.p99_ms <= stats.max_ms
    assert stats.p50_ms < 10.0
    clock.reset_stats()
    assert clock.lateness_stats().count == 0


def test_lateness_ring_buffer_keeps_newest() -> None:
    clock = MediaClock(10, stats_size=4)
    for value in range(6):
        clock._record_lateness(value / 1000.0)
    assert clock.lateness_ms.tolist() == pytest.approx([2.0, 3.0, 4.0, 5.0])


def test_subscribe_outside_a_loop_waits_for_start_and_survives_loop_changes() -> None:
    clock = MediaClock(10)
    ticks: list[int] = []
    subscription = clock.subscribe(ticks.append)
    assert not clock.running

    async def run(seconds: float) -> None:
        clock.start()
        await asyncio.sleep(seconds)

    asyncio.run(run(0.05))
    first_run = len(ticks)
    assert first_run >= 2
    asyncio.run(run(0.05))  # a new loop: the clock restarts there, ticks stay monotonic
    subscription.cancel()
    assert len(ticks) > first_run
    assert ticks == sorted(set(ticks))


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        MediaClock(0)
    with pytest.raises(ValueError):
        MediaClock(20, max_catch_up=-1)


async def test_start_on_a_running_clock_keeps_the_grid() -> None:
    loop = asyncio.get_running_loop()
    clock = MediaClock(10)
    times: list[float] = []
    subscription = clock.subscribe(lambda tick: times.append(loop.time()))
    await asyncio.sleep(0.035)
    clock.start()  # already ticking on this loop: must not restart the deadline grid
    await asyncio.sleep(0.045)
    subscription.cancel()
    deadlines = np.array(times) - clock.lateness_ms / 1000.0
    assert np.all(np.abs(np.diff(deadlines) - 0.010) < 0.0005)
