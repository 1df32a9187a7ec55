"""Offer 127.0.0.1 as an ICE host candidate, for one peer connection only.

Why this exists: aioice's ``get_host_addresses`` deliberately leaves the
loopback address out, so a browser on the same machine (a demo, a developer's
laptop, Chromium in the test suite with ``--allow-loopback-in-peer-connection``)
finds no candidate pair with an aiortc peer on a host that has no other
interface, and otherwise takes a detour over a LAN address.

Why a per-connection subclass: the alternatives change process-wide state.
Patching ``aioice.ice.get_host_addresses`` would affect every connection
gathering at the same moment, including calls that must not offer loopback,
because gathering runs in tasks interleaved on one event loop. Instead, after
``setRemoteDescription`` has created the connection's ICE gatherers and before
``setLocalDescription`` gathers, the class of each gatherer's aioice
``Connection`` is switched to :class:`_LoopbackConnection`, which differs only
in ``get_component_candidates`` (a public aioice method): it gathers as usual,
then binds one more host socket on 127.0.0.1. That second round runs with STUN
and TURN switched off, since a socket bound to loopback can reach neither and
would only stall gathering until aioice's timeout (or allocate a second relay).
Nothing outside the chosen connections changes.

Private names used: ``RTCIceGatherer._connection`` (aiortc's own
RTCIceTransport reads it the same way; if a future aiortc renames it,
:func:`offer_loopback_candidates` raises instead of silently doing nothing),
and aioice's ``_transport_policy``, read defensively so that a relay-only
connection never offers a host candidate.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from aioice import Candidate, Connection
from aiortc import RTCPeerConnection

__all__ = ["LOOPBACK_ADDRESS", "is_loopback_candidate", "offer_loopback_candidates"]

LOOPBACK_ADDRESS = "127.0.0.1"


class _LoopbackConnection(Connection):
    """An aioice connection that also gathers a host candidate on 127.0.0.1."""

    async def get_component_candidates(
        self,
        component: int,
        addresses: list[str],
        timeout: int = 5,  # noqa: ASYNC109 - aioice's signature, which this overrides
    ) -> list[Candidate]:
        candidates: list[Candidate] = await super().get_component_candidates(
            component, addresses, timeout
        )
        if LOOPBACK_ADDRESS in addresses or not _gathers_host_candidates(addresses, self):
            return candidates
        stun_server, turn_server = self.stun_server, self.turn_server
        self.stun_server = self.turn_server = None
        try:
            candidates += await super().get_component_candidates(
                component, [LOOPBACK_ADDRESS], timeout
            )
        finally:
            self.stun_server, self.turn_server = stun_server, turn_server
        return candidates


def _gathers_host_candidates(addresses: list[str], connection: Any) -> bool:
    """False under the relay-only policy, where no host candidate may be offered.

    aioice passes an empty address list then; an empty list with the default
    policy only means "no interface but loopback", exactly the case to serve.
    """
    if addresses:
        return True
    policy = getattr(connection, "_transport_policy", None)
    return getattr(policy, "name", "ALL") != "RELAY"


def offer_loopback_candidates(pc: RTCPeerConnection) -> int:
    """Make `pc`'s ICE gatherers include 127.0.0.1; returns how many were switched.

    Call after ``setRemoteDescription`` (answerer) or after adding the tracks
    and data channels (offerer), and before ``setLocalDescription``, which
    gathers. Gatherers that already started are left alone.
    """
    switched = 0
    for gatherer in _ice_gatherers(pc):
        if gatherer.state != "new":
            continue
        connection = gatherer._connection
        if not isinstance(connection, Connection):
            raise TypeError(
                f"unexpected ICE connection type {type(connection).__name__}; "
                "the installed aiortc is not supported for loopback candidates"
            )
        if not isinstance(connection, _LoopbackConnection):
            connection.__class__ = _LoopbackConnection
            switched += 1
    return switched


def _ice_gatherers(pc: RTCPeerConnection) -> list[Any]:
    """The distinct ICE gatherers of `pc`'s transceivers and SCTP transport."""
    transports: list[Any] = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    seen: set[int] = set()
    gatherers: list[Any] = []
    for dtls in transports:
        gatherer = dtls.transport.iceGatherer
        if id(gatherer) not in seen:
            seen.add(id(gatherer))
            gatherers.append(gatherer)
    return gatherers


def is_loopback_candidate(candidate_line: str) -> bool:
    """True for an SDP ``a=candidate`` line whose address is a loopback address."""
    fields = candidate_line.split()
    if len(fields) < 6:
        return False
    try:
        return ipaddress.ip_address(fields[4]).is_loopback
    except ValueError:
        return False
