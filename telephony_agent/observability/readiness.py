"""`/healthz` and `/readyz`: is the process alive, and should it be sent calls now.

Why two answers: an orchestrator restarts a process that is not alive, but only stops
routing to one that is not ready — draining, full, overloaded, deaf on SIP, or unable
to keep records. Restarting a draining instance would cut the calls it is finishing.

The records check runs a one-row query on the records reader's own worker thread, at
most once per `interval_s`, bounded by `timeout_s`: the event loop awaits it like any
other I/O and never blocks, and a busy probe schedule costs one query per interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from telephony_agent.switchboard import Switchboard

__all__ = ["Readiness", "ReadyState", "RecordsProbe"]


class RecordsProbe:
    """Whether the records database answers; the answer is kept for `interval_s`."""

    def __init__(
        self,
        ping: Callable[[], Awaitable[object]],
        *,
        interval_s: float = 5.0,
        timeout_s: float = 2.0,
    ) -> None:
        self._ping = ping
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._checked_at = -float("inf")
        self._reachable = True
        self._running: asyncio.Task[bool] | None = None
        self._ping_task: asyncio.Future[object] | None = None

    async def reachable(self) -> bool:
        if time.monotonic() - self._checked_at < self.interval_s:
            return self._reachable
        if self._running is None or self._running.done():
            # Shared by every request that arrives while it runs: one query at a time.
            self._running = asyncio.ensure_future(self._probe())
        return await asyncio.shield(self._running)

    async def _probe(self) -> bool:
        # A query stuck on a dead server is not started again: its worker thread would
        # only queue behind it. It is waited for (up to the timeout) until it returns.
        if self._ping_task is None or self._ping_task.done():
            self._ping_task = asyncio.ensure_future(self._ping())
        task = self._ping_task
        done, _ = await asyncio.wait({task}, timeout=self.timeout_s)
        # Unreachable, timed out, or refused all mean "not now".
        reachable = bool(done) and not task.cancelled() and task.exception() is None
        self._reachable = reachable
        self._checked_at = time.monotonic()
        return reachable


@dataclass(frozen=True)
class ReadyState:
    ready: bool
    #: Each check by name: True when it passes.
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def failing(self) -> list[str]:
        return [name for name, ok in self.checks.items() if not ok]

    def as_json(self) -> dict[str, object]:
        return {
            "status": "ready" if self.ready else "not_ready",
            "checks": self.checks,
            "failing": self.failing,
        }


class Readiness:
    """The checks behind `/readyz`."""

    def __init__(
        self,
        board: Switchboard,
        *,
        sip_listening: Callable[[], bool] | None = None,
        records: RecordsProbe | None = None,
    ) -> None:
        self._board = board
        self._sip_listening = sip_listening
        self._records = records

    async def check(self) -> ReadyState:
        board = self._board
        checks = {
            "not_draining": not board.draining,
            "not_overloaded": not board.overloaded,
            "under_capacity": board.active_calls < board.max_calls,
        }
        if self._sip_listening is not None:
            checks["sip_listening"] = self._sip_listening()
        if self._records is not None:
            checks["records_reachable"] = await self._records.reachable()
        return ReadyState(all(checks.values()), checks)
