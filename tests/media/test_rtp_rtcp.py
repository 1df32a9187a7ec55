"""RTCP: SR/RR building, tolerant compound parsing, RFC 3550 loss and jitter, LSR/DLSR/RTT."""

from __future__ import annotations

import contextlib
import random
import struct

import pytest
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony_agent.media.rtp.rtcp import (
    NTP_EPOCH_OFFSET,
    ReceptionStatistics,
    RtcpReporter,
    SenderCounters,
    ntp_middle32,
    ntp_timestamp,
    parse_compound,
)

OURS = 0x0A0B0C0D
PEER = 0x11223344


def reception_with_loss() -> ReceptionStatistics:
    stats = ReceptionStatistics(PEER, 8000, base_ext_seq=65530)
    for ext in (65530, 65531, 65533, 65536, 65537):
        stats.on_packet(ext)
    return stats


def test_ntp_conversion() -> None:
    assert ntp_timestamp(0.0) == NTP_EPOCH_OFFSET << 32
    assert ntp_timestamp(1.5) == ((NTP_EPOCH_OFFSET + 1) << 32) | (1 << 31)
    assert ntp_middle32(0x1234_5678_9ABC_DEF0) == 0x5678_9ABC


def test_sender_report_round_trip() -> None:
    reporter = RtcpReporter(OURS, "abc@telephony-agent")
    data = reporter.build_report(
        10.0,
        1_700_000_000.25,
        sender=SenderCounters(packets=250, octets=40_000, rtp_timestamp=123_456),
        reception=reception_with_loss(),
    )
    report = parse_compound(data)
    (sr,) = report.sender_reports
    assert sr.ssrc == OURS
    assert sr.sender_info.packet_count == 250
    assert sr.sender_info.octet_count == 40_000
    assert sr.sender_info.rtp_timestamp == 123_456
    assert sr.sender_info.ntp_timestamp == ntp_timestamp(1_700_000_000.25)
    (block,) = sr.reports
    assert block.ssrc == PEER
    assert block.packets_lost == 3  # 65530..65537 is 8 expected, 5 received
    assert block.fraction_lost == (3 << 8) // 8
    assert block.highest_sequence == 65537  # one wrap: cycles=1, seq=1
    assert (block.lsr, block.dlsr) == (0, 0)


def test_receiver_report_while_we_send_nothing() -> None:
    reporter = RtcpReporter(OURS, "x")
    data = reporter.build_report(0.0, 0.0, sender=None, reception=reception_with_loss())
    report = parse_compound(data)
    assert report.sender_reports == []
    assert [rr.ssrc for rr in report.receiver_reports] == [OURS]
    assert len(report.blocks()) == 1
    empty = parse_compound(reporter.build_report(0.0, 0.0, sender=None, reception=None))
    assert empty.receiver_reports[0].reports == []


def test_compound_starts_with_a_report_and_carries_the_cname() -> None:
    data = RtcpReporter(OURS, "me@host").build_report(0.0, 0.0, sender=None, reception=None)
    assert data[1] == 201  # RR first, as RFC 3550 §6.1 requires
    assert b"me@host" in data
    assert len(data) % 4 == 0


def test_bye() -> None:
    report = parse_compound(RtcpReporter(OURS, "x").build_bye())
    assert report.bye == [OURS]


def test_tolerates_extensions_unknown_packets_and_padding() -> None:
    reporter = RtcpReporter(OURS, "x")
    sr = reporter.build_report(
        0.0, 5.0, sender=SenderCounters(1, 160, 0), reception=reception_with_loss()
    )
    words = struct.unpack_from("!H", sr, 2)[0]
    sr_len = 4 + 4 * words
    # Profile-specific extension: two more words after the report block.
    extended = bytearray(sr[:sr_len]) + b"\x00" * 8
    struct.pack_into("!H", extended, 2, words + 2)
    app = struct.pack("!BBH", 0x80, 204, 2) + b"\x00" * 8  # an APP packet
    padded_rr = struct.pack("!BBHL", 0xA0, 201, 2, PEER) + b"\x00\x00\x00\x04"
    report = parse_compound(bytes(extended) + app + padded_rr + sr[sr_len:])
    assert len(report.sender_reports) == 1 and len(report.blocks()) == 1
    assert report.receiver_reports[0].ssrc == PEER


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\xc8",
        struct.pack("!BBH", 0x40, 200, 6) + b"\x00" * 24,  # version 1
        struct.pack("!BBH", 0x80, 200, 9) + b"\x00" * 24,  # length past the end
        struct.pack("!BBH", 0x81, 200, 6) + b"\x00" * 24,  # SR too short for its block
        struct.pack("!BBH", 0x81, 201, 1) + b"\x00" * 4,  # RR too short for its block
        struct.pack("!BBH", 0xA0, 201, 1) + b"\x00\x00\x00\x09",  # bad padding
    ],
)
def test_malformed_packets_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_compound(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_raise_nothing_but_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        parse_compound(data)


def reference_jitter(arrivals: list[float], stamps: list[int], rate: int) -> float:
    """RFC 3550 A.8 written out literally."""
    jitter = 0.0
    for i in range(1, len(arrivals)):
        transit_now = arrivals[i] * rate - stamps[i]
        transit_before = arrivals[i - 1] * rate - stamps[i - 1]
        jitter += (abs(transit_now - transit_before) - jitter) / 16
    return jitter


def test_jitter_estimator_matches_rfc_3550_and_handles_the_timestamp_wrap() -> None:
    rng = random.Random(7)
    start = 0xFFFF_FFFF - 160 * 20
    stamps = [start + 160 * i for i in range(200)]
    arrivals = [1.0 + 0.02 * i + rng.uniform(0, 0.01) for i in range(200)]
    stats = ReceptionStatistics(PEER, 8000, 0)
    for ts, at in zip(stamps, arrivals, strict=True):
        stats.on_timing(ts & 0xFFFF_FFFF, at)
    assert stats.jitter == pytest.approx(reference_jitter(arrivals, stamps, 8000), rel=1e-9)
    assert 1.0 < stats.jitter_ms < 6.0


def test_constant_delay_means_zero_jitter() -> None:
    stats = ReceptionStatistics(PEER, 48000, 0)
    for i in range(50):
        stats.on_timing(960 * i, 3.0 + 0.02 * i)
    assert stats.jitter_ms == pytest.approx(0.0, abs=1e-6)


def test_lsr_dlsr_and_round_trip_time() -> None:
    ours = RtcpReporter(OURS, "a")
    peer_sr = RtcpReporter(PEER, "b").build_report(
        0.0, 1000.0, sender=SenderCounters(1, 1, 0), reception=None
    )
    ours.on_report(parse_compound(peer_sr), now=50.0, wall=1000.1)
    reception = ReceptionStatistics(PEER, 8000, 0)
    reception.on_packet(0)
    ours_rr = parse_compound(ours.build_report(50.5, 1000.6, sender=None, reception=reception))
    block = ours_rr.blocks()[0]
    assert block.lsr == ntp_middle32(ntp_timestamp(1000.0))
    assert block.dlsr == int(0.5 * 65536)

    # The peer reports on our stream: sent at 2000.0, held 0.25 s, back at 2000.35.
    lsr = ntp_middle32(ntp_timestamp(2000.0))
    info = RtcpReceiverInfo(OURS, 64, 12, 10, 80, lsr, int(0.25 * 65536))
    rr = bytes(RtcpRrPacket(ssrc=PEER, reports=[info]))
    ours.on_report(parse_compound(rr), now=60.0, wall=2000.35)
    assert ours.peer is not None
    assert ours.peer.fraction_lost == 0.25
    assert ours.peer.cumulative_lost == 12
    assert ours.peer.rtt_s == pytest.approx(0.1, abs=1e-3)


def test_report_timing_is_randomised_around_the_interval() -> None:
    reporter = RtcpReporter(OURS, "x", interval_s=5.0, rng=random.Random(3))
    assert not reporter.due(100.0)  # starts the timer
    first = next(t for t in (100.0 + 0.05 * i for i in range(200)) if reporter.due(t))
    assert 101.25 <= first <= 103.75
    reporter.build_report(first, 0.0, sender=None, reception=None)
    assert not reporter.due(first + 2.4)
    assert reporter.due(first + 7.5)
