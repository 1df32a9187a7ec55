"""Reading a live call's media and model counters without knowing its leg's class.

Why duck typing: a SIP call's leg wraps an RTP leg (`leg.rtp.stats`, an `RtpStats`), a
browser call's WebRTC leg reports most of the same packet counters in its own `stats`;
this package sits below the front doors and must not import them. A counter a leg
does not keep reads as 0.
"""

from __future__ import annotations

from telephony_agent.media.leg import MediaLeg

__all__ = ["RTP_FIELDS", "rtp_counters"]

#: The RTP counters exported as metrics, by their `RtpStats` field name.
RTP_FIELDS = (
    "packets_in",
    "packets_out",
    "lost",
    "late",
    "concealed_frames",
    "foreign_source",
    "malformed",
    "duplicates",
)


def rtp_counters(leg: MediaLeg) -> dict[str, int] | None:
    """The leg's RTP counters, or None when the leg has no RTP (a file leg)."""
    rtp = getattr(leg, "rtp", None)
    stats = getattr(rtp if rtp is not None else leg, "stats", None)
    if stats is None or not hasattr(stats, "packets_in"):
        return None
    return {name: int(getattr(stats, name, 0)) for name in RTP_FIELDS}
