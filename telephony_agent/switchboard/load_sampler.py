"""Feeds the overload gate once a second: the asyncio shell around `overload.py`.

Why once a second and off the media tick: the tick must never do more than move
audio, and one second holds 50 ticks, enough for a p99 that reacts within the time a
caller would notice. The sample reads what is already counted elsewhere (the media
clock's lateness ring, the kernel's CPU time for this process), so taking it costs a
percentile over 50 numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import numpy as np
import structlog

from telephony_agent.switchboard.board import Switchboard
from telephony_agent.switchboard.overload import LoadSample, OverloadGate

__all__ = ["LoadSampler"]

log = structlog.get_logger(__name__)


class LoadSampler:
    """Measures the process each `interval_s` and tells the switchboard's gate."""

    def __init__(
        self,
        board: Switchboard,
        *,
        interval_s: float = 1.0,
        cpu_time: Callable[[], float] = time.process_time,
        wall_time: Callable[[], float] = time.monotonic,
    ) -> None:
        self._board = board
        self._interval_s = interval_s
        self._cpu_time = cpu_time
        self._wall_time = wall_time
        self._task: asyncio.Task[None] | None = None
        self._cpu = cpu_time()
        self._wall = wall_time()
        self._ticks = board.clock.lateness_count
        self._calls = board.active_calls
        self._admitted = board.stats.admitted

    @property
    def gate(self) -> OverloadGate:
        return self._board.overload

    def start(self) -> None:
        """Measure from now on, and open the gate's books at once.

        The first sample has no interval behind it: it only tells the gate how many
        calls there are, so a burst of INVITEs in the first second is charged at the
        configured cost per call instead of being admitted unmeasured.
        """
        board = self._board
        self._cpu, self._wall = self._cpu_time(), self._wall_time()
        self._ticks = board.clock.lateness_count
        self._calls, self._admitted = board.active_calls, board.stats.admitted
        self.gate.observe(
            LoadSample(at=self._wall, lateness_p99_ms=0.0, cpu=0.0, calls=self._calls, steady=False)
        )
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._interval_s
            await asyncio.sleep(self._interval_s)
            self.sample(late_s=max(0.0, loop.time() - due))

    def sample(self, *, late_s: float) -> LoadSample:
        """Measure the interval since the previous sample and feed the gate.

        `late_s` is how late this sample itself woke: the lateness when no call makes
        the media clock tick (the loop may still be starved).
        """
        board = self._board
        cpu, wall = self._cpu_time(), self._wall_time()
        elapsed = wall - self._wall
        share = (cpu - self._cpu) / elapsed if elapsed > 0 else 0.0
        calls, admitted = board.active_calls, board.stats.admitted
        steady = calls == self._calls and admitted == self._admitted
        sample = LoadSample(
            at=wall,
            lateness_p99_ms=self._clock_lateness_p99_ms(late_s),
            cpu=max(0.0, share),
            calls=calls,
            steady=steady and elapsed > 0,
        )
        self._cpu, self._wall, self._calls, self._admitted = cpu, wall, calls, admitted
        change = self.gate.observe(sample)
        if change == "entered":
            log.warning(
                "overload_entered",
                clock_lateness_p99_ms=round(sample.lateness_p99_ms, 2),
                cpu=round(sample.cpu, 3),
                calls=calls,
                cpu_per_call=round(self.gate.cpu_per_call, 5),
            )
        elif change == "left":
            log.info(
                "overload_left",
                clock_lateness_p99_ms=round(sample.lateness_p99_ms, 2),
                cpu=round(sample.cpu, 3),
                calls=calls,
                refused_overloaded=self.gate.refused_overloaded,
            )
        return sample

    def _clock_lateness_p99_ms(self, late_s: float) -> float:
        clock = self._board.clock
        count = clock.lateness_count
        # The clock's stats may have been reset since the last sample: then all are new.
        new = count - self._ticks if count >= self._ticks else count
        self._ticks = count
        if new <= 0:
            return late_s * 1000.0
        recent = clock.lateness_ms[-new:]
        return float(np.percentile(recent, 99.0))
