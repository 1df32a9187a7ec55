"""The media leg of a SIP call: RTP media plus the signalling events that end or steer it.

Why a wrapper and not the RTP leg itself: a SIP call ends for reasons RTP never
sees (a BYE, a CANCEL race, an ACK that never came) and receives DTMF that may
arrive as SIP INFO instead of RFC 4733. The Call only knows `MediaLeg`, so this
class merges both sources into one event stream, and turns the Call's hangup
and transfer into BYE and REFER through the dialog that owns it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from telephony_agent.audio.playout import Frame
from telephony_agent.media.leg import DtmfIn, LegEnded, LegEvent, MediaLeg, TransferResult
from telephony_agent.media.rtp import RtpLeg

__all__ = ["SipCallLeg"]


class SipCallLeg(MediaLeg):
    """`MediaLeg` over one RTP leg, ended by either media or signalling."""

    def __init__(
        self,
        rtp: RtpLeg,
        *,
        hangup: Callable[[str], Awaitable[None]],
        transfer: Callable[[str], Awaitable[TransferResult]],
    ) -> None:
        self.rtp = rtp
        self.sample_rate = rtp.sample_rate
        self.codec = rtp.codec
        self._hangup = hangup
        self._transfer = transfer
        #: Set by every frame the Call sends; a bridged transfer takes the line over
        #: once a whole tick passed without one (`agent_left`).
        self._agent_sent = False

    def events(self) -> AsyncIterator[LegEvent]:
        # The RTP leg's own stream: signalling injects into it (see `end`, `dtmf`).
        # When media dies (inactivity) the Call ends and the call's teardown sends BYE.
        return self.rtp.events()

    def deliver_to(self, handler: Callable[[LegEvent], None] | None) -> bool:
        return self.rtp.deliver_to(handler)

    def end(self, reason: str) -> None:
        """Signalling ended the call (BYE received, ACK timeout, shutdown)."""
        self.rtp.inject(LegEnded(reason))

    def dtmf(self, digit: str, duration_ms: int) -> None:
        """A digit that came as SIP INFO rather than RFC 4733."""
        self.rtp.inject(DtmfIn(digit, duration_ms))

    def send_frame(self, frame: Frame) -> None:
        self._agent_sent = True
        self.rtp.send_frame(frame)

    def agent_left(self) -> bool:
        """True when no frame came from the Call since the last ask, once per tick:
        the Call hands over exactly one frame per tick while it runs, so a tick
        without one means it has stopped and the line is free."""
        sent = self._agent_sent
        self._agent_sent = False
        return not sent

    async def hangup(self, reason: str) -> None:
        await self._hangup(reason)

    async def transfer(self, target: str) -> TransferResult:
        return await self._transfer(target)

    def send_dtmf(self, digits: str) -> bool:
        return self.rtp.send_dtmf(digits)

    def deliver_g711(self) -> bool:
        return self.rtp.deliver_g711()

    async def close(self) -> None:
        await self.rtp.hangup("closed")
