"""Bounded latency samples with percentiles, cheap enough for the media path.

Why a ring of floats and not a histogram library: one `add` per 20 ms frame per
call must cost well under a microsecond, memory must not grow with call length,
and reports want exact p50/p99 of the recent window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LatencySamples", "LatencySummary"]


@dataclass(frozen=True)
class LatencySummary:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def describe(self) -> str:
        if self.count == 0:
            return "no samples"
        return f"p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms (n={self.count})"


class LatencySamples:
    """The most recent `capacity` latencies (stored in seconds, reported in ms)."""

    __slots__ = ("_count", "_values")

    def __init__(self, capacity: int = 8192) -> None:
        self._values = np.zeros(max(1, capacity), dtype=np.float64)
        self._count = 0

    def add(self, seconds: float) -> None:
        self._values[self._count % self._values.size] = seconds
        self._count += 1

    def extend(self, other: LatencySamples) -> None:
        for value in other.values_s():
            self.add(float(value))

    def values_s(self) -> np.ndarray:
        return self._values[: min(self._count, self._values.size)].copy()

    def __len__(self) -> int:
        return min(self._count, self._values.size)

    def summary(self) -> LatencySummary:
        values = self.values_s()
        if values.size == 0:
            return LatencySummary(0, 0.0, 0.0, 0.0)
        p50, p99 = np.percentile(values, [50.0, 99.0]) * 1000.0
        return LatencySummary(int(values.size), float(p50), float(p99), float(values.max() * 1000))
