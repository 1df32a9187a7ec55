"""Turning "call this number for that profile" into an admitted outbound SIP call.

Why apart from the SIP server: which identity, credentials and first hop a call uses
depends on the registration it is placed through, the target may be a bare number
(then it is dialled at the registration's domain), and placing calls costs money, so
the rate is limited here before anything is admitted.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from telephony_agent.server.outbound_call import Route
from telephony_agent.sip.message import SipParseError, SipUri
from telephony_agent.switchboard import CallRequest
from telephony_agent.trunk.registrations import Registrations

__all__ = ["DialError", "DialRequest", "RateLimiter", "plan_call"]

_NUMBER = re.compile(r"^\+?[0-9*#]{1,32}$")


class DialError(ValueError):
    """A dial request that cannot be placed; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class DialRequest:
    to: str
    profile: str | None = None
    registration: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CallPlan:
    target: SipUri
    route: Route
    request: CallRequest


class RateLimiter:
    """A token bucket: `rate` calls per second on average, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._at: float | None = None

    def take(self, now: float) -> bool:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def plan_call(
    dial: DialRequest,
    *,
    registrations: Registrations | None,
    local_host: str,
) -> CallPlan:
    """Where and as whom to call; DialError names what is wrong with the request."""
    account = None
    if dial.registration is not None:
        account = registrations.account(dial.registration) if registrations else None
        if account is None:
            known = ", ".join(registrations.names()) if registrations else "none configured"
            raise DialError(f"unknown registration {dial.registration!r} (known: {known})", 404)
    to = dial.to.strip()
    if _NUMBER.match(to):
        if account is None:
            raise DialError("a bare number needs a registration to dial it through")
        to = f"sip:{to}@{account.domain}"
    try:
        target = SipUri.parse(to)
    except (SipParseError, ValueError):
        raise DialError(f"'to' = {dial.to[:80]!r}: expected a sip: URI or a number") from None
    if target.scheme not in ("sip", "sips") or not target.host:
        raise DialError(f"'to' = {dial.to[:80]!r}: expected a sip: URI or a number")
    if account is not None:
        route = Route(
            from_uri=account.aor,
            credentials=account.credentials,
            outbound_proxy=account.outbound_proxy,
            transport=account.transport,
            first_hop=account.registrar,
        )
    else:
        transport = (target.params.get("transport") or "udp").upper()
        if target.scheme == "sips":
            transport = "TLS"
        route = Route(from_uri=f"sip:agent@{local_host}", transport=transport)
    caller = SipUri.parse(route.from_uri).user or "agent"
    request = CallRequest(
        kind="sip",
        external_id=f"{uuid.uuid4().hex}@{local_host}",
        caller=caller,
        dialled=target.user or "",
        profile=dial.profile,
        remote=str(target),
        direction="outbound",
        variables=dict(dial.variables),
    )
    return CallPlan(target, route, request)
