"""The WebRTC leg: a browser (or WHIP client) calling over aiortc's RTCPeerConnection.

`WebRtcLeg` is imported on first use: aiortc, its DTLS, SCTP and ICE stacks cost tens
of megabytes a `serve` that answers only SIP never needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telephony_agent.media.webrtc.ice import IceServer
from telephony_agent.media.webrtc.offer import WebRtcOfferError

if TYPE_CHECKING:
    from telephony_agent.media.webrtc.leg import WebRtcLeg

__all__ = ["IceServer", "WebRtcLeg", "WebRtcOfferError"]


def __getattr__(name: str) -> Any:
    if name == "WebRtcLeg":
        from telephony_agent.media.webrtc.leg import WebRtcLeg

        return WebRtcLeg
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
