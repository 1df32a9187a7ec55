"""One registration with a SIP registrar, as a sans-I/O state machine.

Why sans-I/O: the rules that make a registration dependable are all about time and
answers — refresh at half the granted expiry, follow 423 Min-Expires, answer
401/407 (and `stale=true`) once per nonce, back off after failures so a registrar
that is down is not hammered, keep the NAT binding warm, unregister on the way out.
Keeping them free of sockets lets tests drive hours of registrar behaviour in
microseconds; `server/registrar_client.py` is the thin asyncio shell that sends.

Usage: `start(now)` returns the first REGISTER; each final response goes to
`on_response`, which may return the next request to send at once (an answer to a
challenge, a retry with a larger expiry); `next_deadline()` says when `on_timer`
wants to run, which returns a refresh REGISTER, a retry, or a keep-alive.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from telephony_agent.sip.digest import (
    DigestClient,
    DigestCredentials,
    DigestError,
    choose_challenge,
)
from telephony_agent.sip.message import (
    Headers,
    NameAddr,
    SipRequest,
    SipResponse,
    SipUri,
    Via,
    split_header_values,
)
from telephony_agent.sip.transaction import new_branch

__all__ = [
    "Keepalive",
    "Registration",
    "RegistrationState",
    "RegistrationTarget",
]

#: Never refresh sooner than this before expiry, whatever the registrar grants.
_MIN_REFRESH_S = 5.0


class RegistrationState(StrEnum):
    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"  # waiting for the next attempt
    UNREGISTERING = "unregistering"
    STOPPED = "stopped"


@dataclass(frozen=True)
class RegistrationTarget:
    """What and where to register; the password is only in `credentials`."""

    name: str
    registrar: SipUri
    #: The address-of-record: `sip:username@domain`.
    aor: str
    credentials: DigestCredentials = field(repr=False)
    contact_user: str
    expires_s: int = 300
    transport: str = "UDP"
    #: Keep-alive period: OPTIONS on UDP, CRLF on TCP/TLS; 0 disables.
    keepalive_s: float = 25.0
    retry_min_s: float = 10.0
    retry_max_s: float = 600.0


@dataclass(frozen=True)
class Keepalive:
    """Time to refresh the NAT binding: the shell sends OPTIONS (UDP) or CRLF (TCP)."""

    reliable: bool


class Registration:
    """The state of one registration; feed it responses and timer ticks."""

    def __init__(
        self,
        target: RegistrationTarget,
        *,
        contact_host: str,
        contact_port: int,
        jitter: Callable[[], float] | None = None,
        cnonce: Callable[[], str] | None = None,
    ) -> None:
        self.target = target
        self._contact_host = contact_host
        self._contact_port = contact_port
        self._jitter = jitter or (lambda: random.uniform(0.5, 1.0))
        self._digest = DigestClient(target.credentials, cnonce=cnonce)
        self._call_id = f"{uuid.uuid4().hex}@{contact_host}"
        self._from_tag = uuid.uuid4().hex[:10]
        self._cseq = 0
        self._requested_s = target.expires_s
        self.state = RegistrationState.IDLE
        self.granted_s: int | None = None
        self.registered_until: float | None = None
        self.failures = 0
        self.last_error: str | None = None
        self.last_status: int | None = None
        self._refresh_at: float | None = None
        self._retry_at: float | None = None
        self._keepalive_at: float | None = None
        self._answered_nonce: str | None = None

    # ------------------------------------------------------------------ inputs

    def start(self, now: float) -> SipRequest:
        """The first REGISTER (also used to restart after `stop`)."""
        self.state = RegistrationState.REGISTERING
        return self._register(self._requested_s)

    def stop(self, now: float) -> SipRequest | None:
        """Unregister (`Expires: 0`) if registered; None if there is nothing to remove."""
        was_registered = self.state is RegistrationState.REGISTERED or (
            self.registered_until is not None and self.registered_until > now
        )
        self._refresh_at = self._retry_at = self._keepalive_at = None
        if not was_registered:
            self.state = RegistrationState.STOPPED
            return None
        self.state = RegistrationState.UNREGISTERING
        return self._register(0)

    def on_response(self, response: SipResponse, now: float) -> SipRequest | None:
        """A final response to our last REGISTER; returns a request to send at once, if any."""
        self.last_status = response.status
        if self.state is RegistrationState.UNREGISTERING:
            if response.status in (401, 407) and self._take_challenge(response, now):
                return self._register(0)
            self.state = RegistrationState.STOPPED
            self.registered_until = None
            return None
        if self.state is RegistrationState.STOPPED:
            return None
        status = response.status
        if 200 <= status < 300:
            self._registered(response, now)
            return None
        if status in (401, 407):
            if self._take_challenge(response, now):
                return self._register(self._requested_s)
            return None
        if status == 423:
            minimum = _int_header(response, "Min-Expires")
            if minimum is not None and self._requested_s < minimum <= 86_400:
                self._requested_s = minimum
                return self._register(minimum)
            self._fail(now, f"423 without a usable Min-Expires ({minimum})")
            return None
        retry_after = _int_header(response, "Retry-After") if status in (500, 503) else None
        self._fail(now, f"{status} {response.reason}"[:120], retry_after=retry_after)
        return None

    def on_transport_failure(self, now: float, reason: str) -> None:
        """No answer (timer F) or the connection failed: retry later."""
        self.last_status = None
        if self.state is RegistrationState.UNREGISTERING:
            self.state = RegistrationState.STOPPED
            return
        self._fail(now, reason)

    def next_deadline(self) -> float | None:
        times = [t for t in (self._refresh_at, self._retry_at, self._keepalive_at) if t is not None]
        return min(times) if times else None

    def on_timer(self, now: float) -> SipRequest | Keepalive | None:
        """Whatever is due now: a refresh or retry REGISTER, or a keep-alive."""
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            self.state = RegistrationState.REGISTERING
            return self._register(self._requested_s)
        if self._refresh_at is not None and now >= self._refresh_at:
            self._refresh_at = None
            return self._register(self._requested_s)
        if self._keepalive_at is not None and now >= self._keepalive_at:
            self._keepalive_at = now + self.target.keepalive_s
            return Keepalive(reliable=self.target.transport != "UDP")
        return None

    def binding_lost(self, now: float) -> SipRequest | None:
        """A keep-alive went unanswered or the connection dropped: register again now."""
        if self.state is not RegistrationState.REGISTERED:
            return None
        self.state = RegistrationState.REGISTERING
        self._refresh_at = None
        return self._register(self._requested_s)

    # ------------------------------------------------------------------ views

    def status(self, now: float) -> dict[str, object]:
        """For /health and logs: never the password."""
        result: dict[str, object] = {
            "state": self.state.value,
            "registrar": str(self.target.registrar),
            "aor": self.target.aor,
            "failures": self.failures,
        }
        if self.registered_until is not None:
            result["expires_in_s"] = max(0, round(self.registered_until - now))
        if self._retry_at is not None:
            result["retry_in_s"] = max(0, round(self._retry_at - now))
        if self.last_error:
            result["last_error"] = self.last_error
        return result

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def contact_uri(self) -> str:
        uri = f"sip:{self.target.contact_user}@{self._contact_host}:{self._contact_port}"
        if self.target.transport != "UDP":
            uri += f";transport={self.target.transport.lower()}"
        return uri

    # ------------------------------------------------------------------ internals

    def _register(self, expires: int) -> SipRequest:
        self._cseq += 1
        headers = Headers()
        via = Via(
            self.target.transport,
            self._contact_host,
            self._contact_port,
            {"branch": new_branch(), "rport": None},
        )
        headers.add("Via", str(via))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(NameAddr(self.target.aor, None, {"tag": self._from_tag})))
        headers.add("To", f"<{self.target.aor}>")
        headers.add("Call-ID", self._call_id)
        headers.add("CSeq", f"{self._cseq} REGISTER")
        headers.add("Contact", f"<{self.contact_uri}>")
        headers.add("Expires", str(expires))
        headers.add("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY, REFER, INFO")
        uri = _request_uri(self.target.registrar)
        answer = self._digest.authorization("REGISTER", uri)
        if answer is not None:
            headers.add(*answer)
        request = SipRequest("REGISTER", uri, headers)
        return request

    def _take_challenge(self, response: SipResponse, now: float) -> bool:
        """Accept a 401/407 challenge; False (and failed) when answering again is futile."""
        proxy = response.status == 407
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        try:
            challenge = choose_challenge(response.headers.get_all(name), proxy=proxy)
        except DigestError as exc:
            self._fail(now, f"{response.status}: {exc}")
            return False
        if challenge.nonce == self._answered_nonce and not challenge.stale:
            # Our answer to this very nonce was refused: the credentials are wrong.
            self._fail(now, f"{response.status}: credentials refused for realm {challenge.realm!r}")
            return False
        realm = self.target.credentials.realm
        if realm is not None and realm != challenge.realm:
            self._fail(
                now, f"{response.status}: asked for realm {challenge.realm!r}, not {realm!r}"
            )
            return False
        self._digest.accept(challenge)
        self._answered_nonce = challenge.nonce
        return True

    def _registered(self, response: SipResponse, now: float) -> None:
        granted = self._granted_expires(response)
        self.state = RegistrationState.REGISTERED
        self.granted_s = granted
        self.registered_until = now + granted
        self.failures = 0
        self.last_error = None
        self._retry_at = None
        self._refresh_at = now + max(_MIN_REFRESH_S, granted / 2)
        if self.target.keepalive_s > 0:
            self._keepalive_at = now + self.target.keepalive_s

    def _granted_expires(self, response: SipResponse) -> int:
        """Our Contact's `expires` in the 200, else its Expires header, else what we asked."""
        ours = _binding_key(self.contact_uri)
        for value in response.headers.get_all("Contact"):
            for contact in split_header_values(value):
                try:
                    address = NameAddr.parse(contact)
                except ValueError:
                    continue
                if _binding_key(address.uri) != ours:
                    continue
                expires = address.params.get("expires")
                if expires is not None and expires.isdigit() and len(expires) <= 9:
                    return max(1, int(expires))
        header = _int_header(response, "Expires")
        if header is not None and header > 0:
            return header
        return self._requested_s

    def _fail(self, now: float, reason: str, *, retry_after: int | None = None) -> None:
        """Count the failure and wait: capped exponential backoff with jitter (RFC 5626
        §4.5 in spirit), never sooner than a registrar's Retry-After."""
        self.failures += 1
        self.last_error = reason
        self.state = RegistrationState.FAILED
        self._refresh_at = None
        self._keepalive_at = None
        self._answered_nonce = None
        exponent = min(self.failures - 1, 16)
        ceiling = min(self.target.retry_max_s, self.target.retry_min_s * (2**exponent))
        delay = max(self.target.retry_min_s, ceiling * self._jitter())
        if retry_after is not None and 0 < retry_after <= 86_400:
            delay = max(delay, float(retry_after))
        self._retry_at = now + delay


def _request_uri(registrar: SipUri) -> str:
    """The registrar's URI without user part (RFC 3261 §10.2: `sip:domain`)."""
    return str(registrar)


def _binding_key(uri: str) -> str:
    """User, host and port of a contact URI, lower-cased: enough to find ours in a 200."""
    try:
        parsed = SipUri.parse(uri)
    except ValueError:
        return uri.lower()
    return f"{parsed.user or ''}@{parsed.host}:{parsed.port or 5060}".lower()


def _int_header(response: SipResponse, name: str) -> int | None:
    value = (response.headers.get(name) or "").strip().split(";")[0].strip()
    if value.isdigit() and len(value) <= 9:
        return int(value)
    return None
