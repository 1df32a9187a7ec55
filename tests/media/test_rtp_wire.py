"""Our RTP/RTCP wire values against aiortc's on random and edge-case packets.

aiortc stays a dependency for the WebRTC leg, so it is the reference here: the
SIP path switched to our own classes only to avoid loading it, and must put the
same bytes on the wire and read the same fields back.
"""

from __future__ import annotations

import random
import struct
import subprocess
import sys

import pytest
from aiortc import rtp as ref

from telephony_agent.media.rtp import rtcp_wire as ours
from telephony_agent.media.rtp.wire import RtpPacket, parse


def _random_packet(rng: random.Random) -> bytes:
    """A well-formed packet with any mix of CSRCs, extension and padding (extension profiles
    that are not RFC 8285 ones, whose elements aiortc would parse and could reject)."""
    csrc = [rng.getrandbits(32) for _ in range(rng.randrange(16))]
    extension = rng.random() < 0.4
    pad = rng.randrange(1, 256) if rng.random() < 0.3 else 0
    first = 0x80 | len(csrc) | (0x20 if pad else 0) | (0x10 if extension else 0)
    data = struct.pack(
        "!BBHII",
        first,
        rng.randrange(256),
        rng.getrandbits(16),
        rng.getrandbits(32),
        rng.getrandbits(32),
    )
    data += b"".join(struct.pack("!I", c) for c in csrc)
    if extension:
        words = rng.randrange(5)
        data += struct.pack("!HH", rng.choice((0x1234, 0xABCD)), words)
        data += rng.randbytes(4 * words)
    data += rng.randbytes(rng.randrange(200))
    if pad:
        data += rng.randbytes(pad - 1) + bytes((pad,))
    return data


def _same_fields(mine: RtpPacket, theirs: ref.RtpPacket) -> None:
    assert (mine.version, mine.marker, mine.payload_type) == (
        theirs.version,
        theirs.marker,
        theirs.payload_type,
    )
    assert (mine.sequence_number, mine.timestamp, mine.ssrc) == (
        theirs.sequence_number,
        theirs.timestamp,
        theirs.ssrc,
    )
    assert mine.csrc == theirs.csrc
    assert mine.payload == theirs.payload
    assert mine.padding_size == theirs.padding_size


def test_random_packets_parse_to_the_same_fields_as_aiortc() -> None:
    rng = random.Random(1)
    for _ in range(3000):
        data = _random_packet(rng)
        _same_fields(parse(data), ref.RtpPacket.parse(data))


def test_packets_without_extension_serialise_to_aiortc_bytes_and_back() -> None:
    rng = random.Random(2)
    for _ in range(3000):
        kwargs = {
            "payload_type": rng.randrange(128),
            "marker": rng.randrange(2),
            "sequence_number": rng.getrandbits(16),
            "timestamp": rng.getrandbits(32),
            "ssrc": rng.getrandbits(32),
            "payload": rng.randbytes(rng.randrange(300)),
        }
        mine = RtpPacket(**kwargs)  # type: ignore[arg-type]
        theirs = ref.RtpPacket(**kwargs)  # type: ignore[arg-type]
        csrc = [rng.getrandbits(32) for _ in range(rng.randrange(16))]
        mine.csrc = list(csrc)
        theirs.csrc = list(csrc)
        data = mine.serialize()
        assert data == theirs.serialize()
        assert parse(data) == mine


def test_padding_and_extension_round_trip() -> None:
    packet = RtpPacket(
        96,
        1,
        65535,
        0xFFFFFFFF,
        7,
        b"abc",
        [1, 2],
        extension_profile=0xBEDE,
        extension_data=b"\x10\xaa\x00\x00",
        padding_size=5,
    )
    data = packet.serialize()
    assert data[0] == 0x80 | 0x20 | 0x10 | 2 and data[-1] == 5
    again = parse(data)
    assert again == packet and again.extension and again.padding
    _same_fields(again, ref.RtpPacket.parse(data))
    # aiortc pads with random octets; only the count octet has a meaning.
    theirs = ref.RtpPacket.parse(data).serialize()
    assert len(theirs) == len(data) - 8 and theirs[-1] == 5


def test_the_common_packet_is_the_fast_path_and_reads_right() -> None:
    data = bytes.fromhex("80e0000102030405deadbeef") + b"\xff" * 160
    packet = RtpPacket.parse(data)
    assert (packet.marker, packet.payload_type, packet.sequence_number) == (1, 96, 1)
    assert (packet.timestamp, packet.ssrc, len(packet.payload)) == (0x02030405, 0xDEADBEEF, 160)
    assert not packet.extension and not packet.padding and packet.csrc == []
    assert packet.serialize() == data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "shorter than its header"),
        (b"\x80" * 11, "shorter than its header"),
        (b"\x40" + bytes(11), "version 1"),
        (b"\xc0" + bytes(11), "version 3"),
        (b"\x83" + bytes(11) + bytes(8), "CSRC"),
        (b"\x90" + bytes(11) + b"\x00\x00", "extension header"),
        (b"\x90" + bytes(11) + b"\xbe\xde\x00\x02" + bytes(4), "extension runs past"),
        (b"\xa0" + bytes(11) + b"\x00", "padding of 0"),
        (b"\xa0" + bytes(11) + b"\x02", "padding of 2"),
        (b"\xb1" + bytes(11) + bytes(4) + b"\x00\x00\x00\x00" + b"\x09", "padding of 9"),
    ],
)
def test_malformed_packets_raise_value_error(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse(data)
    with pytest.raises(ValueError):
        ref.RtpPacket.parse(data)


def test_truncations_of_random_packets_never_raise_anything_but_value_error() -> None:
    rng = random.Random(3)
    for _ in range(500):
        data = _random_packet(rng)
        cut = data[: rng.randrange(len(data) + 1)]
        try:
            parse(cut)
        except ValueError:
            continue


def _random_block(rng: random.Random) -> tuple[int, int, int, int, int, int, int]:
    return (
        rng.getrandbits(32),
        rng.randrange(256),
        rng.randrange(-(1 << 23), 1 << 23),
        rng.getrandbits(32),
        rng.getrandbits(32),
        rng.getrandbits(32),
        rng.getrandbits(32),
    )


def test_sender_and_receiver_reports_match_aiortc_bytes_and_parse_back() -> None:
    rng = random.Random(4)
    for _ in range(500):
        blocks = [_random_block(rng) for _ in range(rng.randrange(4))]
        info = (rng.getrandbits(64), rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(32))
        ssrc = rng.getrandbits(32)
        sr = ours.RtcpSrPacket(
            ssrc, ours.RtcpSenderInfo(*info), [ours.RtcpReceiverInfo(*b) for b in blocks]
        )
        ref_sr = ref.RtcpSrPacket(
            ssrc, ref.RtcpSenderInfo(*info), [ref.RtcpReceiverInfo(*b) for b in blocks]
        )
        data = bytes(sr)
        assert data == bytes(ref_sr)
        assert ours.RtcpSrPacket.parse(data[4:], len(blocks)) == sr
        rr = ours.RtcpRrPacket(ssrc, [ours.RtcpReceiverInfo(*b) for b in blocks])
        data = bytes(rr)
        assert data == bytes(ref.RtcpRrPacket(ssrc, [ref.RtcpReceiverInfo(*b) for b in blocks]))
        assert ours.RtcpRrPacket.parse(data[4:], len(blocks)) == rr
        parsed = ref.RtcpPacket.parse(data)[0]
        assert isinstance(parsed, ref.RtcpRrPacket)
        assert [r.packets_lost for r in parsed.reports] == [b[2] for b in blocks]


def test_negative_cumulative_loss_survives_the_24_bit_field() -> None:
    block = ours.RtcpReceiverInfo(1, 0, -1, 2, 3, 4, 5)
    assert bytes(block)[5:8] == b"\xff\xff\xff"
    assert ours.RtcpReceiverInfo.parse(bytes(block)).packets_lost == -1


def test_sdes_cname_and_bye_match_aiortc_bytes_but_for_its_surplus_padding_word() -> None:
    for length in range(0, 40):
        cname = bytes(range(65, 65 + length))
        mine = ours.RtcpSdesPacket([ours.RtcpSourceInfo(0xABCDEF01, [(1, cname)])])
        theirs = ref.RtcpSdesPacket([ref.RtcpSourceInfo(0xABCDEF01, [(1, cname)])])
        data, reference = bytes(mine), bytes(theirs)
        assert len(data) % 4 == 0
        if (4 + 2 + length + 1) % 4:
            assert data == reference
        else:  # aiortc's second null octet starts a word of nothing but padding
            assert reference == data[:2] + bytes((0, data[3] + 1)) + data[4:] + bytes(4)
        assert ours.RtcpSdesPacket.parse(data[4:], 1) == mine
        assert ours.RtcpSdesPacket.parse(reference[4:], 1) == mine
        parsed = ref.RtcpPacket.parse(data)[0]
        assert isinstance(parsed, ref.RtcpSdesPacket) and parsed.chunks[0].items == [(1, cname)]
    for count in range(0, 5):
        sources = list(range(1, count + 1))
        data = bytes(ours.RtcpByePacket(sources))
        assert data == bytes(ref.RtcpByePacket(sources))
        assert ours.RtcpByePacket.parse(data[4:], count).sources == sources


def test_sdes_with_several_chunks_keeps_each_chunk_word_aligned() -> None:
    chunks = [
        ours.RtcpSourceInfo(1, [(1, b"a")]),
        ours.RtcpSourceInfo(2, [(1, b"bcdef"), (2, b"name")]),
        ours.RtcpSourceInfo(3, []),
    ]
    data = bytes(ours.RtcpSdesPacket(chunks))
    assert ours.RtcpSdesPacket.parse(data[4:], 3).chunks == chunks
    assert data[4 + 8 : 4 + 12] == struct.pack("!I", 2)  # chunk 2 starts on a word


@pytest.mark.parametrize(
    ("parser", "body", "count"),
    [
        (ours.RtcpSrPacket.parse, bytes(24 + 23), 1),
        (ours.RtcpRrPacket.parse, bytes(3), 0),
        (ours.RtcpByePacket.parse, bytes(7), 2),
        (ours.RtcpSdesPacket.parse, bytes(3), 1),
        (ours.RtcpSdesPacket.parse, b"\x00\x00\x00\x01\x01\x05abc", 1),
        (ours.RtcpSdesPacket.parse, b"\x00\x00\x00\x01\x01\x01a", 1),
    ],
)
def test_truncated_rtcp_bodies_raise_value_error(parser: object, body: bytes, count: int) -> None:
    assert callable(parser)
    with pytest.raises(ValueError):
        parser(body, count)


def test_the_sip_side_does_not_load_aiortc_or_pyav() -> None:
    """Down to `serve` itself: aiortc and PyAV cost ~30 MB a process, and a SIP-only
    process (each worker of `serve --workers`) never needs them."""
    code = (
        "import sys, telephony_agent.media.rtp, telephony_agent.server.sip_server\n"
        "import telephony_agent.media.rtp.leg, telephony_agent.fuzz.targets\n"
        "import telephony_agent.commands.serve, telephony_agent.cli\n"
        "print(sorted(m for m in ('aiortc', 'av') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
