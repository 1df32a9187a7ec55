"""SRTP protection for one RTP leg, keyed by SDES (RFC 3711 over libsrtp).

Why a small wrapper: the leg works on plain RTP bytes; with SRTP on, every
outbound packet is protected just before `sendto` and every inbound one checked and
decrypted just after `recvfrom`. libsrtp does the cryptography in C (pylibsrtp, which
aiortc already brings). A packet that fails authentication is dropped and counted,
never passed on: it is noise or an attack, not audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pylibsrtp import Error as LibSrtpError
from pylibsrtp import Policy, Session

__all__ = ["SrtpContext", "SrtpKey", "SrtpStats"]


class SrtpKey(Protocol):
    """A suite name and its 30-byte master key and salt (an SDES crypto line)."""

    @property
    def suite(self) -> str: ...

    @property
    def key_salt(self) -> bytes: ...


_PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}


@dataclass
class SrtpStats:
    protected: int = 0
    unprotected: int = 0
    auth_failures: int = 0


class SrtpContext:
    """Outbound (our key) and inbound (their key) SRTP sessions of one media stream."""

    def __init__(self, ours: SrtpKey, theirs: SrtpKey) -> None:
        self.stats = SrtpStats()
        self.suite = ours.suite
        outbound = Policy(
            key=ours.key_salt,
            ssrc_type=Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=_PROFILES[ours.suite],
        )
        inbound = Policy(
            key=theirs.key_salt,
            ssrc_type=Policy.SSRC_ANY_INBOUND,
            srtp_profile=_PROFILES[theirs.suite],
        )
        outbound.allow_repeat_tx = True  # retransmitted DTMF end packets
        self._tx = Session(policy=outbound)
        self._rx = Session(policy=inbound)

    def protect(self, packet: bytes) -> bytes:
        self.stats.protected += 1
        return bytes(self._tx.protect(packet))

    def protect_rtcp(self, packet: bytes) -> bytes:
        return bytes(self._tx.protect_rtcp(packet))

    def unprotect(self, packet: bytes) -> bytes | None:
        """The plain RTP packet, or None (counted) when it fails authentication or replay."""
        try:
            plain = bytes(self._rx.unprotect(packet))
        except LibSrtpError:
            self.stats.auth_failures += 1
            return None
        self.stats.unprotected += 1
        return plain

    def unprotect_rtcp(self, packet: bytes) -> bytes | None:
        try:
            return bytes(self._rx.unprotect_rtcp(packet))
        except LibSrtpError:
            self.stats.auth_failures += 1
            return None
