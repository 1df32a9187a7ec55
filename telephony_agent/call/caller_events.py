"""How the caller's events (audio, digits, the end of the line) reach a call.

Why a module of its own: a leg either hands its events over directly, from its
datagram callback (`MediaLeg.deliver_to`, no task wake-up per 20 ms packet, see
`media/outlet.py`), or is read through `events()`. Both must end the same way (the
leg's end, or a failure that ends the call with `media_error`), log with the call's
fields bound, and stop at once when the call is torn down, so the next reader of the
line (a bridged transfer's relay) gets every event after that.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable

import structlog

from telephony_agent.media.leg import LegEvent, MediaLeg

__all__ = ["CallerEvents"]

log = structlog.get_logger(__name__)


class CallerEvents:
    """Feeds one leg's inbound events to `handle` until it says the leg ended (True)."""

    def __init__(
        self,
        leg: MediaLeg,
        handle: Callable[[LegEvent], bool],
        *,
        failed: Callable[[], None],
        exhausted: Callable[[], None],
    ) -> None:
        self._leg = leg
        self._handle = handle
        #: Called when handling an event raised: the call ends (`media_error`).
        self._failed = failed
        #: Called when `events()` ran out without the leg's end.
        self._exhausted = exhausted
        self._done = asyncio.Event()
        self._context: contextvars.Context | None = None

    async def run(self) -> None:
        """Until the leg ends, handling fails or `stop`; run it as the call's task."""
        # The call's log fields are bound in this task's context; direct deliveries
        # come from a datagram callback, so they run in a copy of it.
        self._context = contextvars.copy_context()
        if self._leg.deliver_to(self._delivered):
            await self._done.wait()
            return
        try:
            async for event in self._leg.events():
                if self._handle(event):
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("uplink_failed")
            self._failed()
            return
        self._exhausted()

    def stop(self) -> None:
        """No more events into this call; the leg queues them for its next reader."""
        if not self._done.is_set():
            self._done.set()
            self._leg.deliver_to(None)

    def _delivered(self, event: LegEvent) -> None:
        if self._done.is_set() or self._context is None:
            return
        self._context.run(self._handle_one, event)

    def _handle_one(self, event: LegEvent) -> None:
        try:
            ended = self._handle(event)
        except Exception:
            log.exception("uplink_failed")
            self.stop()
            self._failed()
            return
        if ended:
            self.stop()
