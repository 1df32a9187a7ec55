"""The caller's RTP, taken from aiortc's DTLS transport before aiortc's receiver decodes it.

Why: aiortc's ``RTCRtpReceiver`` is built for video and costs an audio call
dearly, both in CPU and in delay:

* every packet goes through a jitter buffer that holds four packets back
  (``prefetch=4``), about 80 ms added to every word the caller says before the
  model hears it, and a single lost packet stalls the stream until sixteen
  more have arrived (320 ms), after which the backlog comes out in a burst;
* every frame then crosses to a decoder thread and back (a condition
  variable, a self-pipe write and a new asyncio task per frame), and is
  decoded as stereo only for us to mix it down again.

So the leg takes the packets at the point where aiortc's DTLS transport hands
each decrypted, parsed and routed RTP packet to its receiver, and decodes them
with the project's own inbound path (:class:`~telephony_agent.media.rtp.
receiver.InboundStream`: no delay while packets arrive in order, a bounded
reorder window, loss concealment), the same one plain RTP calls use. aiortc's
receiver stays in place for everything else: its RTCP handling (an RTCP BYE
from the page still ends the remote track, which is how the leg learns that
the page hung up) and its remote track.

Private names used, all on one receiver object and nothing global:
``RTCRtpReceiver._handle_rtp_packet`` and ``_handle_rtcp_packet``, the two
methods ``RTCDtlsTransport`` calls for every routed packet, are shadowed by
instance attributes; ``RTCDtlsTransport._send_rtp`` sends our RTCP reports.
:meth:`ReceiverTap.install` checks that they exist and raises if a future
aiortc renames them, instead of silently decoding nothing.

The RTP package has its own packet values (so a SIP-only process never loads
aiortc); :func:`wire_rtp` and :func:`wire_sr` turn aiortc's into those at this
edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from typing import Any

import structlog
from aiortc import RTCRtpReceiver
from aiortc.rtp import RtcpSrPacket, RtpPacket

from telephony_agent.media.rtp import rtcp_wire, wire

__all__ = ["ReceiverTap", "local_ssrc_and_cname", "wire_rtp", "wire_sr"]

log = structlog.get_logger(__name__)

_HOOKED = ("_handle_rtp_packet", "_handle_rtcp_packet")
_SSRC_CNAME = re.compile(r"^a=ssrc:(\d+) cname:(\S+)", re.MULTILINE)


def local_ssrc_and_cname(sdp: str) -> tuple[int, str] | None:
    """Our sender's SSRC and CNAME as announced in our SDP (``a=ssrc:N cname:X``), if any.

    Why from the SDP: it is what the page was told; RTCP reports must carry
    the same identity as the media we send.
    """
    match = _SSRC_CNAME.search(sdp)
    if match is None:
        return None
    return int(match.group(1)), match.group(2)


def wire_rtp(packet: RtpPacket) -> wire.RtpPacket:
    """aiortc's parsed packet as the RTP package's value (the fields its receiver reads)."""
    return wire.RtpPacket(
        packet.payload_type,
        packet.marker,
        packet.sequence_number,
        packet.timestamp,
        packet.ssrc,
        packet.payload,
        list(packet.csrc),
        padding_size=packet.padding_size,
    )


def wire_sr(packet: RtcpSrPacket) -> rtcp_wire.RtcpSrPacket:
    """aiortc's sender report as the RTP package's value, for its RTCP reporter."""
    info = packet.sender_info
    blocks = [
        rtcp_wire.RtcpReceiverInfo(
            b.ssrc, b.fraction_lost, b.packets_lost, b.highest_sequence, b.jitter, b.lsr, b.dlsr
        )
        for b in packet.reports
    ]
    sender = rtcp_wire.RtcpSenderInfo(
        info.ntp_timestamp, info.rtp_timestamp, info.packet_count, info.octet_count
    )
    return rtcp_wire.RtcpSrPacket(packet.ssrc, sender, blocks)


class ReceiverTap:
    """Routes one aiortc receiver's RTP to `on_rtp`, and its RTCP sender reports to `on_sr`."""

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        on_rtp: Callable[[RtpPacket], None],
        on_sr: Callable[[RtcpSrPacket], None],
    ) -> None:
        self._receiver = receiver
        self._on_rtp = on_rtp
        self._on_sr = on_sr
        self._rtcp_tasks: set[asyncio.Task[None]] = set()
        #: RTCP compound packets handed to the transport.
        self.rtcp_sent = 0

    def install(self) -> None:
        """Take over the receiver's packets; before the connection starts, so none is missed."""
        receiver = self._receiver
        for name in _HOOKED:
            if not callable(getattr(type(receiver), name, None)):
                raise RuntimeError(
                    f"aiortc's RTCRtpReceiver has no {name}(): this aiortc version is not "
                    "supported by the WebRTC leg's receive path"
                )
        original_rtcp = receiver._handle_rtcp_packet

        async def handle_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
            del arrival_time_ms
            self._on_rtp(packet)

        async def handle_rtcp(packet: Any) -> None:
            await original_rtcp(packet)
            if isinstance(packet, RtcpSrPacket):
                self._on_sr(packet)

        # Instance attributes shadow the class's methods for this receiver only.
        setattr(receiver, "_handle_rtp_packet", handle_rtp)  # noqa: B010
        setattr(receiver, "_handle_rtcp_packet", handle_rtcp)  # noqa: B010

    def send_rtcp(self, data: bytes) -> None:
        """Send one RTCP compound over the call's DTLS-SRTP transport, without waiting."""
        transport: Any = self._receiver.transport
        send = getattr(transport, "_send_rtp", None)
        if send is None:
            return
        task = asyncio.ensure_future(self._send(send, data))
        self._rtcp_tasks.add(task)
        task.add_done_callback(self._rtcp_tasks.discard)

    async def _send(self, send: Callable[[bytes], Any], data: bytes) -> None:
        # ConnectionError: DTLS not (or no longer) up; a report is simply skipped then.
        with contextlib.suppress(ConnectionError):
            await send(data)
            self.rtcp_sent += 1
