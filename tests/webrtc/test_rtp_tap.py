"""ReceiverTap on its own: what it takes over, what it leaves to aiortc, how it fails."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc import RTCRtpReceiver
from aiortc.rtp import (
    RtcpByePacket,
    RtcpReceiverInfo,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
)

from telephony_agent.media.rtp import rtcp_wire, wire
from telephony_agent.media.webrtc.rtp_tap import (
    ReceiverTap,
    local_ssrc_and_cname,
    wire_rtp,
    wire_sr,
)


class FakeTransport:
    """Stands in for RTCDtlsTransport's sending side."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[bytes] = []
        self.fail = fail

    async def _send_rtp(self, data: bytes) -> None:
        if self.fail:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        self.sent.append(data)


class FakeReceiver:
    """The two methods RTCDtlsTransport calls on a receiver, recording what aiortc would see."""

    def __init__(self, transport: FakeTransport) -> None:
        self.transport = transport
        self.rtp_seen: list[RtpPacket] = []
        self.rtcp_seen: list[Any] = []

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        self.rtp_seen.append(packet)

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        self.rtcp_seen.append(packet)


def _tap(receiver: Any) -> tuple[ReceiverTap, list[RtpPacket], list[RtcpSrPacket]]:
    rtp: list[RtpPacket] = []
    srs: list[RtcpSrPacket] = []
    return ReceiverTap(receiver, rtp.append, srs.append), rtp, srs


async def test_rtp_goes_to_the_tap_and_rtcp_to_aiortc_first_then_sender_reports_to_the_tap() -> (
    None
):
    receiver = FakeReceiver(FakeTransport())
    tap, rtp, srs = _tap(receiver)
    tap.install()
    packet = RtpPacket(payload_type=111, sequence_number=1, timestamp=0, ssrc=7)
    await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
    assert rtp == [packet] and receiver.rtp_seen == []
    sr = RtcpSrPacket(ssrc=7, sender_info=RtcpSenderInfo(1 << 32, 0, 1, 160))
    bye = RtcpByePacket(sources=[7])
    await receiver._handle_rtcp_packet(sr)
    await receiver._handle_rtcp_packet(bye)
    assert receiver.rtcp_seen == [sr, bye]  # aiortc still ends its track on BYE
    assert srs == [sr]


async def test_the_hook_is_per_receiver_and_leaves_the_class_alone() -> None:
    tapped, untouched = FakeReceiver(FakeTransport()), FakeReceiver(FakeTransport())
    method = FakeReceiver._handle_rtp_packet
    tap, rtp, _ = _tap(tapped)
    tap.install()
    assert FakeReceiver._handle_rtp_packet is method
    packet = RtpPacket(payload_type=111, sequence_number=1, timestamp=0, ssrc=7)
    await untouched._handle_rtp_packet(packet, arrival_time_ms=0)
    assert untouched.rtp_seen == [packet] and rtp == []
    assert "_handle_rtp_packet" in vars(tapped) and "_handle_rtp_packet" not in vars(untouched)


async def test_an_aiortc_without_the_hooked_methods_is_refused_loudly() -> None:
    class Renamed:
        transport = FakeTransport()

        async def _on_rtp(self, packet: RtpPacket) -> None:
            del packet

    tap, _, _ = _tap(Renamed())
    with pytest.raises(RuntimeError, match="no _handle_rtp_packet"):
        tap.install()


async def test_the_installed_aiortc_has_the_hooked_methods() -> None:
    assert callable(RTCRtpReceiver._handle_rtp_packet)
    assert callable(RTCRtpReceiver._handle_rtcp_packet)


async def test_rtcp_is_sent_without_waiting_and_a_dead_transport_skips_it() -> None:
    transport = FakeTransport()
    tap, _, _ = _tap(FakeReceiver(transport))
    tap.send_rtcp(b"\x81\xc9\x00\x01" + b"\x00" * 4)
    await asyncio.sleep(0)
    assert transport.sent and tap.rtcp_sent == 1
    dead = FakeTransport(fail=True)
    tap, _, _ = _tap(FakeReceiver(dead))
    tap.send_rtcp(b"\x81\xc9\x00\x01" + b"\x00" * 4)
    await asyncio.sleep(0)
    assert dead.sent == [] and tap.rtcp_sent == 0


@pytest.mark.parametrize(
    ("sdp", "expected"),
    [
        ("v=0\r\na=ssrc:3735928559 cname:{abc-1}\r\n", (3735928559, "{abc-1}")),
        ("v=0\r\na=msid:x y\r\na=ssrc:42 cname:c\r\na=ssrc:43 cname:d\r\n", (42, "c")),
        ("v=0\r\na=ssrc:42 msid:a b\r\n", None),
        ("", None),
    ],
)
def test_local_ssrc_and_cname(sdp: str, expected: tuple[int, str] | None) -> None:
    assert local_ssrc_and_cname(sdp) == expected


def test_aiortc_packets_become_the_rtp_packages_own_with_every_field() -> None:
    packet = RtpPacket(payload_type=111, marker=1, sequence_number=9, timestamp=960, ssrc=7)
    packet.payload = b"opus"
    packet.csrc = [3]
    assert wire_rtp(packet) == wire.RtpPacket(111, 1, 9, 960, 7, b"opus", [3])
    block = (7, 12, -3, 70_000, 40, 0x1234_5678, 65536)
    sr = RtcpSrPacket(5, RtcpSenderInfo(1 << 40, 960, 10, 1600), [RtcpReceiverInfo(*block)])
    expected = rtcp_wire.RtcpSrPacket(
        5, rtcp_wire.RtcpSenderInfo(1 << 40, 960, 10, 1600), [rtcp_wire.RtcpReceiverInfo(*block)]
    )
    assert wire_sr(sr) == expected and bytes(expected) == bytes(sr)
