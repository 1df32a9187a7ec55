"""A histogram without locks, for observations made on the event loop.

Why not prometheus-client's `Histogram`: its `observe` takes a lock per value, and
turn latencies are observed from the media tick, where nothing may wait. Every
observation and every scrape happens on the one event-loop thread, so plain counts
are enough; the collector turns them into a histogram family when `/metrics` is read.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CALL_DURATION_BUCKETS_S",
    "LATENCY_BUCKETS_S",
    "LATENESS_BUCKETS_S",
    "TOOL_BUCKETS_S",
    "Buckets",
]

#: End of caller speech → first model audio / first frame out: 50 ms to 10 s.
LATENCY_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
#: How late the 20 ms media tick fires: 0.1 ms to 40 ms (two frames).
LATENESS_BUCKETS_S = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.04)
#: Call and Realtime session lengths: 5 s to 1 h.
CALL_DURATION_BUCKETS_S = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0)
#: Tool calls: 10 ms to 30 s.
TOOL_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Buckets:
    """Counts per upper bound (plus +Inf) and the sum of observed values, in seconds."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(sorted(bounds))
        #: Non-cumulative counts; the last slot is everything above the last bound.
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def observe_many(self, values: NDArray[np.float64]) -> None:
        """Many values at once (a numpy array), for samples gathered elsewhere."""
        if values.size == 0:
            return
        slots = np.searchsorted(np.asarray(self.bounds), values, side="left")
        for slot, n in zip(*np.unique(slots, return_counts=True), strict=True):
            self.counts[int(slot)] += int(n)
        self.total += float(values.sum())

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs as the exposition format wants them."""
        result: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            result.append((_le(bound), float(running)))
        result.append(("+Inf", float(running + self.counts[-1])))
        return result


def _le(bound: float) -> str:
    return repr(float(bound))
