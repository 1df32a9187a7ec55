"""Where a leg's inbound events go: a queue read by `events()`, or straight to a handler.

Why not always the queue: an `asyncio.Queue` between the RTP socket and the Call costs
every 20 ms packet a future, a task wake-up and an async-generator step, a few per cent
of a core at tens of calls, for nothing the Call needs: it handles each frame without
waiting on anything. So a consumer may ask for direct delivery (`deliver_to`); the
leg's datagram callback then runs the handler. The queue stays for consumers that
iterate (`events()`), and takes over again when the handler is withdrawn, so whoever
reads the line next (a bridged transfer's relay) misses nothing.

An event produced while the handler runs (the handler closes the leg, which ends it)
is delivered after the handler returns, never inside it: events keep their order and
the handler is never re-entered.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Outlet"]

Event = TypeVar("Event")


class Outlet(Generic[Event]):
    """A queue with an optional direct handler in front of it; see the module docstring."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._handler: Callable[[Event], None] | None = None
        self._delivering = False
        self._held: deque[Event] = deque()

    @property
    def direct(self) -> bool:
        return self._handler is not None

    def put_nowait(self, event: Event) -> None:
        if self._handler is None:
            self._queue.put_nowait(event)
            return
        self._held.append(event)
        self._drain()

    async def get(self) -> Event:
        return await self._queue.get()

    def deliver_to(self, handler: Callable[[Event], None] | None) -> None:
        """From now on hand events to `handler` as they come (what is queued first, in
        order); None puts them back on the queue for `get`."""
        self._handler = handler
        if handler is None:
            if not self._delivering:
                self._requeue_held()
            return
        while not self._queue.empty():
            self._held.append(self._queue.get_nowait())
        self._drain()

    def _drain(self) -> None:
        if self._delivering:
            return  # the delivery already running hands it on, in order
        self._delivering = True
        try:
            while self._held and self._handler is not None:
                self._handler(self._held.popleft())
        finally:
            self._delivering = False
            if self._handler is None:
                self._requeue_held()

    def _requeue_held(self) -> None:
        while self._held:
            self._queue.put_nowait(self._held.popleft())
