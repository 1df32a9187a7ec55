"""Who may start anything with the agent: the allowlist, device authentication, bans.

Why one gate in front of the SIP server: every request that does not belong to a call
we already have passes one decision — allowed network, authenticated device, banned
source — before any work (or any paid model session) is done for it. In-dialog
requests belong to a call that passed the gate already.

The rule: sources in `[sip] allow` are trusted. Without `[[sip.users]]`, everyone
else is refused (dropped, or 403 with `deny_action = "403"`); with users, everyone
else must authenticate INVITEs with digest (401 with SHA-256 and MD5 challenges),
and a source that fails `auth_max_failures` times within a minute is banned for
`auth_ban_s` — its requests are dropped, silently. OPTIONS is answered for anyone
not refused (it costs nothing and keeps monitors and NAT bindings alive).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

from telephony_agent.config import Settings, parse_host_port
from telephony_agent.sip.access import AccessList, FailureBans, parse_networks
from telephony_agent.sip.digest_server import DigestVerifier
from telephony_agent.sip.message import SipRequest
from telephony_agent.sip.transaction import Peer
from telephony_agent.trunk.devices import read_device_passwords

__all__ = ["GateStats", "Gatekeeper", "Verdict"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Verdict:
    """`status` 0 lets the request through; -1 drops it; otherwise answer with it."""

    status: int
    challenges: tuple[str, ...] = ()
    username: str | None = None

    @property
    def passes(self) -> bool:
        return self.status == 0


PASS = Verdict(0)
DROP = Verdict(-1)


@dataclass
class GateStats:
    denied: int = 0
    challenged: int = 0
    auth_failures: int = 0
    authenticated: int = 0
    banned_dropped: int = 0
    bans: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class Gatekeeper:
    """Decides for every out-of-dialog request; counts everything it refuses."""

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        sip = settings.sip
        self.access = AccessList(parse_networks(sip.allow, "sip.allow"))
        self.deny_status = 403 if sip.deny_action == "403" else -1
        self.bans = FailureBans(max_failures=sip.auth_max_failures, ban_s=sip.auth_ban_s)
        self.verifier: DigestVerifier | None = None
        if settings.sip_users:
            passwords = read_device_passwords(settings.sip_users, environ)
            self.verifier = DigestVerifier(
                sip.auth_realm, passwords, algorithms=sip.auth_algorithms
            )
        self.stats = GateStats()

    @property
    def open_to_everyone(self) -> bool:
        return self.access.open and self.verifier is None

    def check(self, request: SipRequest, source: Peer, now: float) -> Verdict:
        host = source.host
        if self.bans.is_banned(host, now):
            self.stats.banned_dropped += 1
            return DROP
        if self.access.open and self.verifier is None:
            return PASS
        if not self.access.open and self.access.allows(host):
            return PASS
        if self.verifier is None:
            self._count("not_allowed")
            return Verdict(self.deny_status)
        if request.method != "INVITE":
            # Only INVITE costs anything; CANCEL, OPTIONS and the like pass (a CANCEL
            # without its INVITE gets 481 anyway).
            return PASS
        header = request.headers.get("Authorization")
        result = self.verifier.verify(request.method, header, now)
        if result.ok:
            self.bans.succeeded(host)
            self.stats.authenticated += 1
            return Verdict(0, username=result.username)
        if header is not None and not result.stale:
            self.stats.auth_failures += 1
            if self.bans.failed(host, now):
                self.stats.bans += 1
                log.warning("sip_source_banned", source=host, ban_s=self.bans.ban_s)
        self.stats.challenged += 1
        return Verdict(401, tuple(self.verifier.challenges(now, stale=result.stale)))

    def _count(self, reason: str) -> None:
        self.stats.denied += 1
        self.stats.by_reason[reason] = self.stats.by_reason.get(reason, 0) + 1

    def health(self) -> dict[str, int]:
        s = self.stats
        return {
            "denied": s.denied,
            "challenged": s.challenged,
            "auth_failures": s.auth_failures,
            "authenticated": s.authenticated,
            "bans": s.bans,
            "banned_dropped": s.banned_dropped,
        }


def exposure_warning(settings: Settings, gate: Gatekeeper) -> str | None:
    """One line when a public (or any-address) listener answers anyone at all."""
    if not gate.open_to_everyone:
        return None
    host, _ = parse_host_port("sip.listen", settings.sip.listen)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_loopback or (address.is_private and not address.is_unspecified):
        return None
    return (
        f"SIP on {settings.sip.listen} answers anyone who reaches it, and every answered call "
        "spends your model budget: set [sip] allow (your trunk's addresses) or [[sip.users]]"
    )
