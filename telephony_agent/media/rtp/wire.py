"""RTP packets on the wire (RFC 3550 §5.1): one value, parse and serialise.

Why our own instead of ``aiortc.rtp.RtpPacket``: importing any aiortc module
runs ``aiortc/__init__``, which loads all of aiortc and PyAV, about 30 MB of
resident memory a SIP-only process never uses. A plain SIP call needs only the
12-byte header, CSRCs, an optional header extension and padding, which is what
is here. The WebRTC leg keeps aiortc's packets (it needs aiortc anyway) and
converts at its edge.

Parsing is on the per-packet hot path, so the fixed header is read with one
``struct.unpack_from`` and the common case (version 2, no padding, extension or
CSRC) slices the payload straight away. Header extensions are kept as the raw
profile and data words: nothing on a SIP call reads their elements, and keeping
the bytes lets a packet be forwarded unchanged.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = ["HEADER_SIZE", "RtpPacket", "parse"]

#: Bytes of the fixed RTP header.
HEADER_SIZE = 12
_FIXED = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")
# First octet of a version 2 packet with no padding, no extension and no CSRC.
_PLAIN = 0x80


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet; field order and defaults follow aiortc's so call sites read the same."""

    payload_type: int = 0
    marker: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    payload: bytes = b""
    csrc: list[int] = field(default_factory=list)
    #: The header extension's 16-bit profile (RFC 3550 §5.3.1), None without one.
    extension_profile: int | None = None
    #: The header extension's data, a whole number of 32-bit words.
    extension_data: bytes = b""
    #: Padding octets after the payload, the count octet included; 0 without padding.
    padding_size: int = 0
    version: int = 2

    @property
    def extension(self) -> bool:
        """The X bit: the packet carries a header extension."""
        return self.extension_profile is not None

    @property
    def padding(self) -> bool:
        """The P bit: the payload is followed by padding."""
        return self.padding_size > 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """The packet in `data`; ValueError when it is not a well-formed RTP packet."""
        return parse(data)

    def serialize(self) -> bytes:
        """The packet's bytes; padding octets are zero, as RFC 3550 §5.1 allows."""
        csrc = self.csrc
        profile = self.extension_profile
        pad = self.padding_size
        first = (self.version << 6) | len(csrc)
        if pad:
            first |= 0x20
        if profile is not None:
            first |= 0x10
        head = _FIXED.pack(
            first,
            (self.marker << 7) | self.payload_type,
            self.sequence_number,
            self.timestamp,
            self.ssrc,
        )
        if first == _PLAIN:
            return head + self.payload
        parts = [head]
        if csrc:
            parts.append(struct.pack(f"!{len(csrc)}I", *csrc))
        if profile is not None:
            data = self.extension_data
            if len(data) % 4:
                raise ValueError("RTP header extension data is not a whole number of words")
            parts.append(_EXT_HEADER.pack(profile, len(data) // 4))
            parts.append(data)
        parts.append(self.payload)
        if pad:
            if not 0 < pad <= 255:
                raise ValueError(f"RTP padding size {pad} out of range 1-255")
            parts.append(bytes(pad - 1) + bytes((pad,)))
        return b"".join(parts)


def parse(data: bytes) -> RtpPacket:
    """Read one RTP packet; ValueError on a short header, a version other than 2, or
    CSRCs, header extension or padding that run past the end of the datagram."""
    size = len(data)
    if size < HEADER_SIZE:
        raise ValueError(f"RTP packet of {size} bytes is shorter than its header")
    first, second, seq, ts, ssrc = _FIXED.unpack_from(data)
    if first == _PLAIN:
        return RtpPacket(second & 0x7F, second >> 7, seq, ts, ssrc, data[HEADER_SIZE:])
    if first >> 6 != 2:
        raise ValueError(f"RTP version {first >> 6} is not 2")
    pos = HEADER_SIZE
    count = first & 0x0F
    csrc: list[int] = []
    if count:
        pos += 4 * count
        if size < pos:
            raise ValueError("RTP CSRC list runs past the end of the packet")
        csrc = list(struct.unpack_from(f"!{count}I", data, HEADER_SIZE))
    profile: int | None = None
    extension_data = b""
    if first & 0x10:
        if size < pos + 4:
            raise ValueError("RTP header extension header runs past the end of the packet")
        profile, words = _EXT_HEADER.unpack_from(data, pos)
        pos += 4
        end = pos + 4 * words
        if size < end:
            raise ValueError("RTP header extension runs past the end of the packet")
        extension_data = data[pos:end]
        pos = end
    pad = 0
    end = size
    if first & 0x20:
        pad = data[-1]
        if pad == 0 or pad > size - pos:
            raise ValueError(f"RTP padding of {pad} bytes does not fit the packet")
        end = size - pad
    return RtpPacket(
        second & 0x7F,
        second >> 7,
        seq,
        ts,
        ssrc,
        data[pos:end],
        csrc,
        profile,
        extension_data,
        pad,
    )
