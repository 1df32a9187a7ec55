"""A SIP call's Realtime session between 180 Ringing and the ACK of our 200 OK.

Why a policy of its own: the session is opened while the caller hears ringing, so
that 200 OK goes out only when the model listens and the caller's first word is
never lost to a websocket handshake. But with a paid provider an open session is
money, and an INVITE whose 200 is never ACKed (a scanner, a flood, a peer that
vanished) used to keep its session for the whole 32 s the 200 is retransmitted.

Measured (benchmarks/bench_sip_abuse.py, parts connect and ack): the local
backend's session is ready in about 2 ms, and on loopback the caller's ACK comes
about 1 ms after our 200 OK. A cloud provider adds a TCP, TLS and websocket
handshake and a session.update exchange: several round trips to a distant service
(timed with ``--provider`` where a key is set), which the caller would hear as
silence before the greeting if the session were opened only on the ACK. An ACK,
on the other hand, follows our 200 within a round trip, and within 4*T1 even when
the 200 or the ACK is lost once or twice (the 200 is resent after T1, 2*T1 and
4*T1). So the session still connects during ringing, the Call starts on the ACK,
and when no ACK has come after `HOLD_T1` * T1 the session is closed: a
never-ACKed INVITE holds it 4 s instead of 32 s, and a late ACK after all opens a
fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from telephony_agent.realtime.client import RealtimeSession
from telephony_agent.realtime.errors import RealtimeError

__all__ = ["HOLD_T1", "Connected", "PendingSession"]

#: The session waits this many T1 for the ACK (4 s at the default T1 of 500 ms):
#: three retransmissions of the 200 (after T1, 2*T1 and 4*T1) have gone out by then.
HOLD_T1 = 8
#: An ACK can come until the 200's retransmissions stop, 64*T1 after it was sent.
ACK_DEADLINE_T1 = 64


@dataclass(frozen=True)
class Connected:
    """How a connect attempt ended: a session, or why there is none."""

    session: RealtimeSession | None
    #: "" with a session; "cancelled", "timeout" or the RealtimeError's name without.
    why: str = ""


class PendingSession:
    """Connects the session while ringing and holds it only as long as an ACK is likely."""

    def __init__(
        self,
        new_session: Callable[[], RealtimeSession],
        *,
        t1_s: float,
        log: structlog.typing.FilteringBoundLogger,
        on_closed_unacked: Callable[[], None] | None = None,
    ) -> None:
        #: Makes the call's session (not yet connected): the admission's, for its profile.
        self._new_session = new_session
        self._t1 = t1_s
        self._log = log
        self._on_closed_unacked = on_closed_unacked
        #: Sessions closed because the ACK was late, and reopened because it came.
        self.closed_unacked = False
        self.reopened = False

    async def connect(self, timeout_s: float, cancelled: asyncio.Event) -> Connected:
        """A connected session, unless `cancelled` is set first, it fails or times out."""
        session = self._new_session()
        connect = asyncio.ensure_future(session.connect())
        stop = asyncio.ensure_future(cancelled.wait())
        try:
            done, _ = await asyncio.wait(
                {connect, stop}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop.cancel()
        if connect in done and connect.exception() is None and not cancelled.is_set():
            return Connected(session)
        if not connect.done():
            connect.cancel()
        with contextlib.suppress(BaseException):
            await connect
        await close_quietly(session)
        if cancelled.is_set():
            return Connected(None, "cancelled")
        error = connect.exception() if connect.done() and not connect.cancelled() else None
        return Connected(
            None, type(error).__name__ if isinstance(error, RealtimeError) else "timeout"
        )

    async def until_acked(
        self,
        session: RealtimeSession,
        acked: asyncio.Event,
        gave_up: asyncio.Event,
        *,
        reconnect_timeout_s: float,
    ) -> RealtimeSession | None:
        """The session to run the call with once the ACK is in, or None (no ACK in time,
        a BYE or CANCEL first, or no session to be had for a late ACK)."""
        hold_s = HOLD_T1 * self._t1
        if await _first(acked, gave_up, hold_s):
            return session
        await close_quietly(session)
        if gave_up.is_set():
            return None
        self.closed_unacked = True
        if self._on_closed_unacked is not None:
            self._on_closed_unacked()
        self._log.info("session_closed_awaiting_ack", after_s=round(hold_s, 3))
        remaining_s = (ACK_DEADLINE_T1 - HOLD_T1) * self._t1
        if not await _first(acked, gave_up, remaining_s):
            return None
        self.reopened = True
        self._log.info("late_ack_reopens_session")
        reconnected = await self.connect(reconnect_timeout_s, gave_up)
        return reconnected.session


async def _first(acked: asyncio.Event, gave_up: asyncio.Event, timeout_s: float) -> bool:
    """True when `acked` is set within `timeout_s` and before `gave_up`."""
    if acked.is_set():
        return True
    waiters = {asyncio.ensure_future(acked.wait()), asyncio.ensure_future(gave_up.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return acked.is_set() and not gave_up.is_set()


async def close_quietly(session: RealtimeSession) -> None:
    """Close a session whose call will not run; a failure to close changes nothing."""
    with contextlib.suppress(Exception):
        await session.close()
