"""Counters of one RTP leg, shared by its receive path, send path and RTCP.

Why one mutable record: every drop on the receive path (malformed, foreign
source, wrong payload type, duplicate, late) must be counted where it happens,
never raised, and a call summary or a test wants all of them in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RtpStats"]


@dataclass(slots=True)
class RtpStats:
    """Packet counters of one leg; :attr:`RtpLeg.stats` returns a snapshot copy."""

    #: RTP packets accepted from the peer (audio and telephone-events).
    packets_in: int = 0
    #: RTP packets sent.
    packets_out: int = 0
    #: Payload bytes received in accepted packets / sent.
    octets_in: int = 0
    octets_out: int = 0
    #: Packets never received: skipped over when the reorder window gave up on them.
    lost: int = 0
    #: Packets that arrived after a higher sequence number but in time to be used.
    reordered: int = 0
    #: Copies of a packet already received (dropped).
    duplicates: int = 0
    #: Packets that arrived after their place was already filled or skipped (dropped).
    late: int = 0
    #: Packets of a payload type not negotiated (dropped).
    wrong_pt: int = 0
    #: Packets from an address other than the latched one (dropped).
    foreign_source: int = 0
    #: Times the peer's SSRC changed.
    ssrc_changes: int = 0
    #: Datagrams that are not valid RTP (dropped).
    malformed: int = 0
    #: Sequence jumps too large to be loss, dropped until confirmed (RFC 3550 A.1).
    seq_jumps: int = 0
    #: 20 ms frames synthesised for lost packets (repeat-once, then silence).
    concealed_frames: int = 0
    #: 20 ms frames of silence inserted while the peer sent nothing (DTX, DTMF, outage).
    idle_frames: int = 0
    #: Payloads the codec could not decode (each became silence).
    decode_errors: int = 0
    #: DTMF digits received / sent.
    dtmf_in: int = 0
    dtmf_out: int = 0
    #: RTCP compound packets received, sent, and dropped as malformed or foreign.
    rtcp_in: int = 0
    rtcp_out: int = 0
    rtcp_malformed: int = 0
    #: Interarrival jitter of the peer's stream (RFC 3550 A.8), milliseconds.
    jitter_ms: float = 0.0
    #: What the peer last reported about our stream (RTCP report block), if anything.
    peer_fraction_lost: float = 0.0
    peer_cumulative_lost: int = 0
    peer_jitter_ms: float = 0.0
    #: Round-trip time from the peer's last report block (LSR/DLSR), milliseconds.
    rtt_ms: float | None = None
