"""Minimal RTCP (RFC 3550): reception statistics, periodic SR/RR, tolerant parsing.

Why bother on a phone call: SBCs and carriers read RTCP for call-quality
monitoring, some tear down calls whose RTCP stops, and a peer's receiver
reports are the only way to learn what the caller actually heard (loss, jitter,
round trip). Plain SIP RTP puts RTCP on the odd port above RTP (no rtcp-mux).

What is here, all sans-I/O:

* :class:`ReceptionStatistics` - per peer source: extended highest sequence,
  expected vs received (cumulative and per-interval loss, RFC 3550 A.3), and the
  interarrival jitter estimator (A.8).
* :class:`RtcpReporter` - when the next report is due (5 s, randomised by
  0.5-1.5 as §6.2 asks, so many calls do not report in lock step), building an
  SR (or an RR while we send nothing) plus the SDES CNAME every compound packet
  must carry, a BYE, and reading the peer's SR/RR.

Parsing walks the compound packet header by header instead of a strict
whole-compound parser (aiortc's rejects a whole compound when one SR has
profile-specific extensions or an unknown sub-packet is malformed); the SR/RR/BYE
bodies are read with the values of :mod:`telephony_agent.media.rtp.rtcp_wire`.
Anything that does not parse is counted, never raised.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

from telephony_agent.media.rtp.rtcp_wire import (
    RTCP_BYE,
    RTCP_RR,
    RTCP_SR,
    RtcpByePacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
)
from telephony_agent.media.rtp.serial import ts_delta

__all__ = [
    "NTP_EPOCH_OFFSET",
    "PeerReport",
    "ReceptionStatistics",
    "RtcpReport",
    "RtcpReporter",
    "SenderCounters",
    "ntp_middle32",
    "ntp_timestamp",
    "parse_compound",
]

#: Seconds from the NTP epoch (1900) to the Unix epoch (1970).
NTP_EPOCH_OFFSET = 2_208_988_800
_SDES_CNAME = 1
_HEADER = struct.Struct("!BBH")


def ntp_timestamp(wall: float) -> int:
    """64-bit NTP timestamp of a Unix time."""
    return int((wall + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp, the unit of LSR/DLSR (1/65536 s)."""
    return (ntp >> 16) & 0xFFFFFFFF


class ReceptionStatistics:
    """What we received from one peer source, for report blocks and call stats."""

    def __init__(self, ssrc: int, clock_rate: int, base_ext_seq: int) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.base_ext_seq = base_ext_seq
        self.max_ext_seq = base_ext_seq
        #: Packets received (unique; duplicates are not counted).
        self.received = 0
        #: Interarrival jitter estimate in RTP timestamp units.
        self.jitter = 0.0
        self._expected_prior = 0
        self._received_prior = 0
        self._last_arrival: float | None = None
        self._last_timestamp = 0

    def on_packet(self, ext_seq: int) -> None:
        """Count one unique packet with extended sequence number `ext_seq`."""
        self.received += 1
        if ext_seq > self.max_ext_seq:
            self.max_ext_seq = ext_seq

    def on_timing(self, timestamp: int, arrival_s: float) -> None:
        """Update the jitter estimate (RFC 3550 A.8) with one media packet's arrival."""
        arrival = arrival_s * self.clock_rate
        if self._last_arrival is not None:
            d = (arrival - self._last_arrival) - ts_delta(self._last_timestamp, timestamp)
            self.jitter += (abs(d) - self.jitter) / 16.0
        self._last_arrival = arrival
        self._last_timestamp = timestamp

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000.0 / self.clock_rate

    @property
    def expected(self) -> int:
        return self.max_ext_seq - self.base_ext_seq + 1

    @property
    def cumulative_lost(self) -> int:
        """Expected minus received, clamped to the signed 24-bit field of a report block."""
        return max(-(1 << 23), min((1 << 23) - 1, self.expected - self.received))

    def report_block(self, lsr: int = 0, dlsr: int = 0) -> RtcpReceiverInfo:
        """A report block for this source; starts a new interval for the fraction lost."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        return RtcpReceiverInfo(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            packets_lost=self.cumulative_lost,
            highest_sequence=self.max_ext_seq & 0xFFFFFFFF,
            jitter=min(int(self.jitter), 0xFFFFFFFF),
            lsr=lsr,
            dlsr=dlsr,
        )


@dataclass(frozen=True, slots=True)
class SenderCounters:
    """Our sending side at the moment a report is built."""

    packets: int
    octets: int
    rtp_timestamp: int


@dataclass(slots=True)
class RtcpReport:
    """What one incoming compound packet told us."""

    sender_reports: list[RtcpSrPacket] = field(default_factory=list)
    receiver_reports: list[RtcpRrPacket] = field(default_factory=list)
    bye: list[int] = field(default_factory=list)

    def blocks(self) -> list[RtcpReceiverInfo]:
        """Every report block of the compound, from SRs and RRs alike."""
        found: list[RtcpReceiverInfo] = []
        for sr in self.sender_reports:
            found.extend(sr.reports)
        for rr in self.receiver_reports:
            found.extend(rr.reports)
        return found


def parse_compound(data: bytes) -> RtcpReport:
    """Read SR, RR and BYE out of a compound RTCP packet, skipping other types.

    Tolerant of what real peers send: SRs/RRs with profile-specific extensions
    after their report blocks, padding, APP/XR/feedback packets. Raises
    ValueError when the structure itself is broken (wrong version, a length
    past the end, a count that does not fit), so the caller can count the drop.
    """
    report = RtcpReport()
    pos = 0
    size = len(data)
    if size < _HEADER.size:
        raise ValueError("RTCP packet shorter than a header")
    while pos < size:
        if size - pos < _HEADER.size:
            raise ValueError("truncated RTCP header")
        first, packet_type, words = _HEADER.unpack_from(data, pos)
        if first >> 6 != 2:
            raise ValueError("RTCP version is not 2")
        end = pos + 4 + 4 * words
        if end > size:
            raise ValueError("RTCP length past the end of the datagram")
        body = data[pos + 4 : end]
        if first & 0x20:
            pad = body[-1] if body else 0
            if not 0 < pad <= len(body):
                raise ValueError("bad RTCP padding")
            body = body[:-pad]
        count = first & 0x1F
        if packet_type == RTCP_SR:
            report.sender_reports.append(RtcpSrPacket.parse(body, count))
        elif packet_type == RTCP_RR:
            report.receiver_reports.append(RtcpRrPacket.parse(body, count))
        elif packet_type == RTCP_BYE:
            report.bye.extend(RtcpByePacket.parse(body, count).sources)
        pos = end
    return report


@dataclass(frozen=True, slots=True)
class PeerReport:
    """The peer's view of our stream, from the report block about our SSRC."""

    fraction_lost: float
    cumulative_lost: int
    jitter_units: int
    rtt_s: float | None


class RtcpReporter:
    """Our RTCP participant: report timing, compound building, reading the peer's reports."""

    def __init__(
        self,
        ssrc: int,
        cname: str,
        *,
        interval_s: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self.ssrc = ssrc
        self.cname = cname.encode("utf-8")[:255]
        self.interval_s = interval_s
        self._rng = rng or random.Random()
        self._next_due: float | None = None
        # Middle 32 bits of the peer's last SR and when (monotonic) it arrived.
        self._peer_lsr = 0
        self._peer_sr_at = 0.0
        #: The newest report block the peer sent about us.
        self.peer: PeerReport | None = None

    def _interval(self) -> float:
        return self.interval_s * self._rng.uniform(0.5, 1.5)

    def due(self, now: float) -> bool:
        """True when a report should be sent now (the first call only starts the timer).

        The first report comes after half an interval, as RFC 3550 §6.2 allows,
        so a short call still reports once.
        """
        if self._next_due is None:
            self._next_due = now + self._interval() / 2
            return False
        return now >= self._next_due

    def build_report(
        self,
        now: float,
        wall: float,
        *,
        sender: SenderCounters | None,
        reception: ReceptionStatistics | None,
    ) -> bytes:
        """SR (when we have sent media) or RR, plus SDES CNAME; schedules the next one."""
        self._next_due = now + self._interval()
        blocks: list[RtcpReceiverInfo] = []
        if reception is not None and reception.received:
            lsr = dlsr = 0
            if self._peer_lsr:
                lsr = self._peer_lsr
                dlsr = min(int((now - self._peer_sr_at) * 65536), 0xFFFFFFFF)
            blocks.append(reception.report_block(lsr, dlsr))
        head: RtcpSrPacket | RtcpRrPacket
        if sender is not None and sender.packets:
            info = RtcpSenderInfo(
                ntp_timestamp=ntp_timestamp(wall),
                rtp_timestamp=sender.rtp_timestamp & 0xFFFFFFFF,
                packet_count=sender.packets & 0xFFFFFFFF,
                octet_count=sender.octets & 0xFFFFFFFF,
            )
            head = RtcpSrPacket(ssrc=self.ssrc, sender_info=info, reports=blocks)
        else:
            head = RtcpRrPacket(ssrc=self.ssrc, reports=blocks)
        return bytes(head) + self._sdes()

    def build_bye(self) -> bytes:
        """An RR + SDES + BYE compound to send when the call ends."""
        head = bytes(RtcpRrPacket(ssrc=self.ssrc))
        return head + self._sdes() + bytes(RtcpByePacket(sources=[self.ssrc]))

    def _sdes(self) -> bytes:
        chunk = RtcpSourceInfo(ssrc=self.ssrc, items=[(_SDES_CNAME, self.cname)])
        return bytes(RtcpSdesPacket(chunks=[chunk]))

    def on_report(self, report: RtcpReport, now: float, wall: float) -> None:
        """Take in a parsed compound: remember the peer's SR, read its block about us."""
        for sr in report.sender_reports:
            self._peer_lsr = ntp_middle32(sr.sender_info.ntp_timestamp)
            self._peer_sr_at = now
        for block in report.blocks():
            if block.ssrc != self.ssrc:
                continue
            rtt: float | None = None
            if block.lsr:
                arrival = ntp_middle32(ntp_timestamp(wall))
                units = (arrival - block.lsr - block.dlsr) & 0xFFFFFFFF
                if units < 0x80000000:  # a negative RTT means unsynchronised clocks
                    rtt = units / 65536.0
            self.peer = PeerReport(
                fraction_lost=block.fraction_lost / 256.0,
                cumulative_lost=block.packets_lost,
                jitter_units=block.jitter,
                rtt_s=rtt,
            )
