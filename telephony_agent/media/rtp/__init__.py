"""Plain RTP/AVP media for SIP calls: codecs, RFC 4733 DTMF, reorder, RTCP, ports, the leg.

Only :class:`RtpLeg` does I/O; every other module is sans-I/O and testable
without sockets. The SIP layer opens a leg with :meth:`RtpLeg.open` (binding
its ports), puts :attr:`RtpLeg.local_port` into its SDP, applies the negotiated
result and every re-INVITE with :meth:`RtpLeg.configure` (or the positional
:meth:`RtpLeg.update_remote`) and :meth:`RtpLeg.set_direction`, and ends it with
:meth:`RtpLeg.close` or ``hangup`` (both release the ports).
"""

from telephony_agent.media.rtp.codecs import CODEC_NAMES, RtpCodec, make_codec
from telephony_agent.media.rtp.leg import Address, RtpLeg
from telephony_agent.media.rtp.ports import PortAllocator, PortsExhausted
from telephony_agent.media.rtp.stats import RtpStats

__all__ = [
    "CODEC_NAMES",
    "Address",
    "PortAllocator",
    "PortsExhausted",
    "RtpCodec",
    "RtpLeg",
    "RtpStats",
    "make_codec",
]
