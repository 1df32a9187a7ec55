"""RTCP packets on the wire (RFC 3550 §6.4-6.6): SR, RR, SDES, BYE and their parts.

Why our own instead of ``aiortc.rtp``: importing it loads all of aiortc and
PyAV, which a SIP-only process never needs (see ``wire.py``). These are the
values :mod:`telephony_agent.media.rtp.rtcp` builds and reads; the walk over a
compound packet, and its tolerance of what real peers send, stays there. The
bodies' ``parse`` methods take the packet body after the 4-byte common header
(and after padding is removed), as the compound walk hands them over.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "RtcpByePacket",
    "RtcpReceiverInfo",
    "RtcpRrPacket",
    "RtcpSdesPacket",
    "RtcpSenderInfo",
    "RtcpSourceInfo",
    "RtcpSrPacket",
]

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
_HEADER = struct.Struct("!BBH")
_SSRC = struct.Struct("!I")
# A report block: SSRC, fraction lost (8 bits) with cumulative lost (signed 24), then
# extended highest sequence, jitter, LSR and DLSR.
_BLOCK = struct.Struct("!IIIIII")
_SENDER = struct.Struct("!QIII")
_SDES_ITEM = struct.Struct("!BB")


def _packet(packet_type: int, count: int, body: bytes) -> bytes:
    """The common header (version 2, no padding) in front of a word-aligned body."""
    if not 0 <= count <= 31:
        raise ValueError(f"RTCP item count {count} does not fit 5 bits")
    return _HEADER.pack(0x80 | count, packet_type, len(body) // 4) + body


@dataclass(slots=True)
class RtcpReceiverInfo:
    """A report block: how one source reached us (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int
    #: Cumulative packets lost, signed 24-bit (duplicates can make it negative).
    packets_lost: int
    highest_sequence: int
    jitter: int
    lsr: int
    dlsr: int

    SIZE = 24

    def __bytes__(self) -> bytes:
        lost = (self.fraction_lost << 24) | (self.packets_lost & 0xFFFFFF)
        return _BLOCK.pack(self.ssrc, lost, self.highest_sequence, self.jitter, self.lsr, self.dlsr)

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> RtcpReceiverInfo:
        """The block at `offset`; ValueError when fewer than 24 bytes remain."""
        if len(data) - offset < cls.SIZE:
            raise ValueError("RTCP report block is truncated")
        ssrc, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 1 << 24
        return cls(ssrc, lost >> 24, cumulative, highest, jitter, lsr, dlsr)


@dataclass(slots=True)
class RtcpSenderInfo:
    """The sender info of an SR: NTP and RTP time of one instant, and what was sent."""

    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int

    SIZE = 20

    def __bytes__(self) -> bytes:
        return _SENDER.pack(
            self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        )

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> RtcpSenderInfo:
        """The sender info at `offset`; ValueError when fewer than 20 bytes remain."""
        if len(data) - offset < cls.SIZE:
            raise ValueError("RTCP sender info is truncated")
        return cls(*_SENDER.unpack_from(data, offset))


def _blocks(body: bytes, start: int, count: int) -> list[RtcpReceiverInfo]:
    size = RtcpReceiverInfo.SIZE
    return [RtcpReceiverInfo.parse(body, start + i * size) for i in range(count)]


@dataclass(slots=True)
class RtcpSrPacket:
    """Sender report: our SSRC, sender info, and report blocks about sources we receive."""

    ssrc: int
    sender_info: RtcpSenderInfo
    reports: list[RtcpReceiverInfo] = field(default_factory=list)

    def __bytes__(self) -> bytes:
        parts = [_SSRC.pack(self.ssrc), bytes(self.sender_info)]
        parts.extend(bytes(block) for block in self.reports)
        return _packet(RTCP_SR, len(self.reports), b"".join(parts))

    @classmethod
    def parse(cls, body: bytes, count: int) -> RtcpSrPacket:
        """An SR body with `count` blocks; bytes after them (profile extensions) are ignored."""
        if len(body) < 4 + RtcpSenderInfo.SIZE + RtcpReceiverInfo.SIZE * count:
            raise ValueError("RTCP SR is shorter than its report count")
        info = RtcpSenderInfo.parse(body, 4)
        blocks = _blocks(body, 4 + RtcpSenderInfo.SIZE, count)
        return cls(_SSRC.unpack_from(body)[0], info, blocks)


@dataclass(slots=True)
class RtcpRrPacket:
    """Receiver report: our SSRC and report blocks, sent while we send no media."""

    ssrc: int
    reports: list[RtcpReceiverInfo] = field(default_factory=list)

    def __bytes__(self) -> bytes:
        parts = [_SSRC.pack(self.ssrc)]
        parts.extend(bytes(block) for block in self.reports)
        return _packet(RTCP_RR, len(self.reports), b"".join(parts))

    @classmethod
    def parse(cls, body: bytes, count: int) -> RtcpRrPacket:
        """An RR body with `count` blocks; bytes after them (profile extensions) are ignored."""
        if len(body) < 4 + RtcpReceiverInfo.SIZE * count:
            raise ValueError("RTCP RR is shorter than its report count")
        return cls(_SSRC.unpack_from(body)[0], _blocks(body, 4, count))


@dataclass(slots=True)
class RtcpSourceInfo:
    """One SDES chunk: a source and its (item type, value) pairs, e.g. (1, CNAME)."""

    ssrc: int
    items: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class RtcpSdesPacket:
    """Source description: chunks, each naming a source (we send only the CNAME)."""

    chunks: list[RtcpSourceInfo] = field(default_factory=list)

    def __bytes__(self) -> bytes:
        parts: list[bytes] = []
        for chunk in self.chunks:
            data = [_SSRC.pack(chunk.ssrc)]
            for item_type, value in chunk.items:
                if not 1 <= item_type <= 255 or len(value) > 255:
                    raise ValueError(f"SDES item {item_type} of {len(value)} bytes is invalid")
                data.append(_SDES_ITEM.pack(item_type, len(value)) + value)
            # A null octet ends the item list, then nulls up to the next word, where the
            # next chunk starts (§6.5). aiortc always adds two and pads only the packet,
            # one word more in a quarter of the cases and misaligned chunks after the first.
            length = sum(map(len, data)) + 1
            data.append(bytes(1 + (-length) % 4))
            parts.append(b"".join(data))
        return _packet(RTCP_SDES, len(self.chunks), b"".join(parts))

    @classmethod
    def parse(cls, body: bytes, count: int) -> RtcpSdesPacket:
        """An SDES body with `count` chunks; ValueError when a chunk or item is truncated."""
        chunks: list[RtcpSourceInfo] = []
        pos = 0
        size = len(body)
        for _ in range(count):
            if size - pos < 4:
                raise ValueError("RTCP SDES chunk is truncated")
            chunk = RtcpSourceInfo(_SSRC.unpack_from(body, pos)[0])
            pos += 4
            while True:
                if pos >= size:
                    raise ValueError("RTCP SDES chunk has no end of its item list")
                item_type = body[pos]
                if item_type == 0:
                    pos += 1
                    break
                if size - pos < 2 or size - pos - 2 < body[pos + 1]:
                    raise ValueError("RTCP SDES item is truncated")
                length = body[pos + 1]
                chunk.items.append((item_type, body[pos + 2 : pos + 2 + length]))
                pos += 2 + length
            pos += (-pos) % 4  # null octets up to the next chunk's word
            chunks.append(chunk)
        return cls(chunks)


@dataclass(slots=True)
class RtcpByePacket:
    """Goodbye: the sources leaving the session."""

    sources: list[int] = field(default_factory=list)

    def __bytes__(self) -> bytes:
        body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        return _packet(RTCP_BYE, len(self.sources), body)

    @classmethod
    def parse(cls, body: bytes, count: int) -> RtcpByePacket:
        """A BYE body with `count` sources; the optional reason after them is ignored."""
        if len(body) < 4 * count:
            raise ValueError("RTCP BYE is shorter than its source count")
        return cls(list(struct.unpack_from(f"!{count}I", body)))
