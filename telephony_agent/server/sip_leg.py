"""The media leg of a SIP call: RTP media plus the signalling events that end or steer it.

Why a wrapper and not the RTP leg itself: a SIP call ends for reasons RTP never
sees (a BYE, a CANCEL race, an ACK that never came) and receives DTMF that may
arrive as SIP INFO instead of RFC 4733. The Call only knows `MediaLeg`, so this
class merges both sources into one event stream, and turns the Call's hangup
and transfer into BYE and REFER through the dialog that owns it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from telephony_agent.audio.playout import Frame
from telephony_agent.media.leg import DtmfIn, LegEnded, LegEvent, MediaLeg
from telephony_agent.media.rtp import RtpLeg

__all__ = ["SipCallLeg"]


class SipCallLeg(MediaLeg):
    """`MediaLeg` over one RTP leg, ended by either media or signalling."""

    def __init__(
        self,
        rtp: RtpLeg,
        *,
        hangup: Callable[[str], Awaitable[None]],
        transfer: Callable[[str], Awaitable[bool]],
    ) -> None:
        self.rtp = rtp
        self.sample_rate = rtp.sample_rate
        self.codec = rtp.codec
        self._hangup = hangup
        self._transfer = transfer
        self._queue: asyncio.Queue[LegEvent] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self._ended = False

    def events(self) -> AsyncIterator[LegEvent]:
        if self._pump is None:
            self._pump = asyncio.ensure_future(self._forward_rtp())
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[LegEvent]:
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, LegEnded):
                return

    async def _forward_rtp(self) -> None:
        async for event in self.rtp.events():
            if isinstance(event, LegEnded):
                # Media died (inactivity): the dialog must still be ended with a BYE.
                if not self._ended:
                    with contextlib.suppress(Exception):
                        await self._hangup(event.reason)
                self.end(event.reason)
                return
            self._queue.put_nowait(event)

    def end(self, reason: str) -> None:
        """Signalling ended the call (BYE received, ACK timeout, shutdown)."""
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(LegEnded(reason))

    def dtmf(self, digit: str, duration_ms: int) -> None:
        """A digit that came as SIP INFO rather than RFC 4733."""
        if not self._ended:
            self._queue.put_nowait(DtmfIn(digit, duration_ms))

    def send_frame(self, frame: Frame) -> None:
        self.rtp.send_frame(frame)

    async def hangup(self, reason: str) -> None:
        self._ended = True
        await self._hangup(reason)

    async def transfer(self, target: str) -> bool:
        return await self._transfer(target)

    def send_dtmf(self, digits: str) -> bool:
        return self.rtp.send_dtmf(digits)

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
        await self.rtp.hangup("closed")
