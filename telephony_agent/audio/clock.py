"""One shared media clock: every leg sends exactly one frame per 20 ms tick.

Why one clock and not a sleeping task per call: ``asyncio.sleep(0.02)`` in a loop
drifts (each sleep starts after the previous one's lateness) and hundreds of
such tasks cost hundreds of wake-ups per tick. Here a single timer wakes the
loop at absolute deadlines ``t0 + k * interval`` (``loop.call_at``), so there is
no drift, and calls every subscriber synchronously in the same wake-up.

If the loop was blocked and ticks were missed, the missed ticks are delivered
back to back, at most ``max_catch_up`` of them, so RTP timestamps stay
continuous across a hiccup; older missed ticks are skipped (a resync) because
replaying seconds of audio in one burst would only overflow the far end's
jitter buffer. Tick numbers always map to the wall-clock deadline, so a resync
shows up as a jump in the tick number.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import structlog
from numpy.typing import NDArray

__all__ = ["LatenessStats", "MediaClock", "Subscription"]

log = structlog.get_logger(__name__)

_LOG_EVERY_NTH_FAILURE = 250


@dataclass(frozen=True, slots=True)
class LatenessStats:
    """How late ticks ran relative to their deadlines, in milliseconds."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float


class Subscription:
    """Handle returned by :meth:`MediaClock.subscribe`; ``cancel()`` stops the callbacks."""

    __slots__ = ("_clock", "active", "callback", "failures")

    def __init__(self, clock: MediaClock, callback: Callable[[int], None]) -> None:
        self._clock = clock
        self.callback = callback
        self.active = True
        self.failures = 0

    def cancel(self) -> None:
        """Stop receiving ticks (idempotent; safe to call from inside a tick callback)."""
        if self.active:
            self.active = False
            self._clock._remove(self)


class MediaClock:
    """Shared periodic tick source driven by absolute loop deadlines.

    The clock starts lazily on the first :meth:`subscribe` made inside a running
    event loop (or explicitly with :meth:`start`) and stops by itself when the
    last subscription is cancelled. Tick numbers increase monotonically for the
    lifetime of the object, also across stop/start. Single event loop, single
    thread.
    """

    def __init__(
        self, interval_ms: int = 20, *, max_catch_up: int = 5, stats_size: int = 1 << 16
    ) -> None:
        if interval_ms <= 0:
            raise ValueError(f"interval_ms must be positive, got {interval_ms}")
        if max_catch_up < 0:
            raise ValueError(f"max_catch_up must be >= 0, got {max_catch_up}")
        self.interval_ms = interval_ms
        self.max_catch_up = max_catch_up
        self._interval_s = interval_ms / 1000.0
        self._subscribers: list[Subscription] = []
        self._snapshot: tuple[Subscription, ...] = ()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._next_tick = 0
        self._origin_tick = 0
        self._origin_time = 0.0
        self._skipped = 0
        self._lateness = np.zeros(max(1, stats_size), dtype=np.float64)
        self._lateness_count = 0

    # ------------------------------------------------------------------ subscribers

    def subscribe(self, callback: Callable[[int], None]) -> Subscription:
        """Call `callback(tick)` on every tick from the next one on."""
        subscription = Subscription(self, callback)
        self._subscribers.append(subscription)
        self._snapshot = tuple(self._subscribers)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return subscription  # no loop yet: start() (or a later subscribe) starts ticking
        if not self.running or self._loop is not loop:
            self.start()
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        self._subscribers.remove(subscription)
        self._snapshot = tuple(self._subscribers)
        if not self._subscribers:
            self.stop()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start ticking on the running loop; the first tick is one interval from now.

        A no-op if already ticking on this loop; moves the clock if it ran on another one.
        """
        loop = asyncio.get_running_loop()
        if self.running and self._loop is loop:
            return
        self.stop()
        self._loop = loop
        self._origin_tick = self._next_tick
        self._origin_time = loop.time() + self._interval_s
        self._handle = loop.call_at(self._origin_time, self._on_timer)
        log.debug("media_clock_started", interval_ms=self.interval_ms, tick=self._next_tick)

    def stop(self) -> None:
        """Stop ticking (subscriptions are kept; the next start() resumes them)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            log.debug("media_clock_stopped", tick=self._next_tick)

    @property
    def running(self) -> bool:
        loop = self._loop
        return self._handle is not None and loop is not None and not loop.is_closed()

    @property
    def next_tick(self) -> int:
        """Number of the next tick to be delivered."""
        return self._next_tick

    @property
    def skipped_ticks(self) -> int:
        """Ticks dropped by resyncs after the loop was blocked for too long."""
        return self._skipped

    # ------------------------------------------------------------------ ticking

    def _deadline(self, tick: int) -> float:
        return self._origin_time + (tick - self._origin_tick) * self._interval_s

    def _on_timer(self) -> None:
        loop = self._loop
        current = self._handle
        if loop is None or current is None:
            return
        now = loop.time()
        elapsed = (now - self._origin_time) / self._interval_s
        due = max(self._next_tick, self._origin_tick + math.floor(elapsed + 1e-9))
        first = self._next_tick
        if due - first > self.max_catch_up:
            skipped = due - first - self.max_catch_up
            self._skipped += skipped
            first += skipped
            log.warning(
                "media_clock_resync",
                skipped_ticks=skipped,
                behind_ms=round((now - self._deadline(self._next_tick)) * 1000.0, 1),
            )
        for tick in range(first, due + 1):
            self._record_lateness(loop.time() - self._deadline(tick))
            self._next_tick = tick + 1
            self._dispatch(tick)
            if self._handle is not current:  # a callback stopped or restarted the clock
                return
        self._handle = loop.call_at(self._deadline(self._next_tick), self._on_timer)

    def _dispatch(self, tick: int) -> None:
        for subscription in self._snapshot:
            if not subscription.active:
                continue
            try:
                subscription.callback(tick)
            except Exception:
                subscription.failures += 1
                if subscription.failures % _LOG_EVERY_NTH_FAILURE == 1:
                    log.exception(
                        "media_clock_callback_failed",
                        tick=tick,
                        callback=getattr(subscription.callback, "__qualname__", "?"),
                        failures=subscription.failures,
                    )

    # ------------------------------------------------------------------ statistics

    def _record_lateness(self, late_s: float) -> None:
        self._lateness[self._lateness_count % self._lateness.size] = late_s * 1000.0
        self._lateness_count += 1

    @property
    def lateness_count(self) -> int:
        """Ticks whose lateness was recorded since start (or the last `reset_stats`)."""
        return self._lateness_count

    @property
    def lateness_ms(self) -> NDArray[np.float64]:
        """Lateness of the most recent ticks (up to `stats_size`), oldest first."""
        size = self._lateness.size
        if self._lateness_count <= size:
            return self._lateness[: self._lateness_count].copy()
        split = self._lateness_count % size
        return np.concatenate([self._lateness[split:], self._lateness[:split]])

    def lateness_stats(self) -> LatenessStats:
        """p50/p99/max of the recorded lateness (zeros when nothing was recorded)."""
        samples = self.lateness_ms
        if samples.size == 0:
            return LatenessStats(0, 0.0, 0.0, 0.0)
        p50, p99 = np.percentile(samples, [50.0, 99.0])
        return LatenessStats(int(samples.size), float(p50), float(p99), float(samples.max()))

    def reset_stats(self) -> None:
        self._lateness_count = 0
