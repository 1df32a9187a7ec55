"""The WebRTC leg: a browser (or WHIP client) calling over aiortc's RTCPeerConnection."""

from __future__ import annotations

from telephony_agent.media.webrtc.leg import IceServer, WebRtcLeg
from telephony_agent.media.webrtc.offer import WebRtcOfferError

__all__ = ["IceServer", "WebRtcLeg", "WebRtcOfferError"]
