"""Limits on calls that are set up but never completed: per source address and overall.

Why: an INVITE costs us an RTP port pair, a Realtime session (money, with a paid
provider) and a call slot until its ACK comes — or until 32 s later when it never
does. A scanner's sweep or a flood of never-ACKed INVITEs from one address used to
take every slot, so real callers heard busy. Three limits answer it:

* new INVITEs per second from one address (a token bucket: bursts of twice the
  rate pass) — beyond it the INVITE is dropped unanswered, so a spoofed source
  gets nothing reflected at it and a real peer simply retransmits later;
* calls from one address that are pending (ringing, or answered and not yet
  ACKed) — beyond it, 503;
* pending calls from all addresses together — beyond it, 503.

Sans-I/O: the caller passes the time; nothing here sleeps or touches a socket. The
tables are bounded (the least recently seen sources are forgotten first) and an
address whose count returns to zero is removed, so a flood from many addresses
leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["MAX_SOURCES", "LimitStats", "PendingLimits", "Verdict"]

#: Addresses whose INVITE rate is remembered; the least recently seen go first.
MAX_SOURCES = 10_000

Verdict = Literal["ok", "rate", "source_pending", "pending"]


@dataclass
class LimitStats:
    """Refusals by reason, for /health."""

    refused_rate: int = 0
    refused_source_pending: int = 0
    refused_pending: int = 0


class PendingLimits:
    """Decides whether a new INVITE from an address may become a call, and counts the
    calls that are pending until their ACK (or their end)."""

    def __init__(
        self,
        *,
        per_source: int,
        total: int,
        rate_per_s: float,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        if per_source < 1 or total < 1 or rate_per_s <= 0 or max_sources < 1:
            raise ValueError("limits must be positive")
        self.per_source = per_source
        self.total = total
        self.rate_per_s = rate_per_s
        #: Twice the rate: a burst of calls after a quiet moment passes whole.
        self.burst = max(1.0, 2.0 * rate_per_s)
        self.max_sources = max_sources
        self.stats = LimitStats()
        self._pending: dict[str, int] = {}
        self._pending_total = 0
        # address -> (tokens, when they were counted); insertion order is recency.
        self._buckets: dict[str, tuple[float, float]] = {}

    @property
    def pending(self) -> int:
        """Calls pending now, from all addresses."""
        return self._pending_total

    def pending_from(self, source: str) -> int:
        return self._pending.get(source, 0)

    @property
    def tracked_sources(self) -> int:
        """Addresses with a pending call or a rate bucket (bounded)."""
        return len(self._pending) + len(self._buckets)

    def check(self, source: str, now: float) -> Verdict:
        """Whether a new INVITE from `source` may be offered; a refusal is counted.

        The rate is checked first: an INVITE dropped for its rate must not also
        count against the pending limits, and a refused one still used a token.
        """
        if not self._take_token(source, now):
            self.stats.refused_rate += 1
            return "rate"
        if self._pending.get(source, 0) >= self.per_source:
            self.stats.refused_source_pending += 1
            return "source_pending"
        if self._pending_total >= self.total:
            self.stats.refused_pending += 1
            return "pending"
        return "ok"

    def started(self, source: str) -> None:
        """A call from `source` is now pending (it passed `check`)."""
        self._pending[source] = self._pending.get(source, 0) + 1
        self._pending_total += 1

    def settled(self, source: str) -> None:
        """A pending call from `source` was ACKed or ended; call once per `started`."""
        count = self._pending.get(source, 0)
        if count <= 0:
            return
        if count == 1:
            del self._pending[source]
        else:
            self._pending[source] = count - 1
        self._pending_total -= 1

    def _take_token(self, source: str, now: float) -> bool:
        self._forget_oldest_if_full(now)
        bucket = self._buckets.pop(source, None)
        if bucket is None:
            tokens = self.burst
            if len(self._buckets) >= self.max_sources:
                del self._buckets[next(iter(self._buckets))]
        else:
            tokens, then = bucket
            tokens = min(self.burst, tokens + max(0.0, now - then) * self.rate_per_s)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        if tokens < self.burst:
            self._buckets[source] = (tokens, now)  # re-inserted: now the most recent
        return allowed

    def _forget_oldest_if_full(self, now: float) -> None:
        """One step of cleanup per INVITE: a bucket that has refilled is no different
        from none, so the least recent one goes once it has."""
        oldest = next(iter(self._buckets), None)
        if oldest is None:
            return
        tokens, then = self._buckets[oldest]
        if tokens + max(0.0, now - then) * self.rate_per_s >= self.burst:
            del self._buckets[oldest]
