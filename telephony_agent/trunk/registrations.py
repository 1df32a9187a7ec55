"""The asyncio shell around `sip.registration`: keeps every `[[registrations]]` alive.

Why a thin shell: all decisions (when to refresh, how long to back off, how to answer
a challenge) are made by the sans-I/O `Registration`; this module only resolves the
registrar's address, sends what it is told through the SIP endpoint, waits until the
next deadline and logs state changes. One task per registration, so a registrar that
does not answer never delays another.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from telephony_agent.logs import register_secret
from telephony_agent.sip.digest import DigestCredentials
from telephony_agent.sip.endpoint import SipEndpoint
from telephony_agent.sip.message import Headers, NameAddr, SipRequest, SipUri, Via
from telephony_agent.sip.registration import (
    Keepalive,
    Registration,
    RegistrationState,
    RegistrationTarget,
)
from telephony_agent.sip.transaction import Peer, new_branch
from telephony_agent.trunk.settings import RegistrationSettings, read_password

__all__ = ["Account", "Registrations"]

log = structlog.get_logger(__name__)

#: How long one REGISTER may wait for its final answer before counting as a failure
#: (the transaction's own timer F answers 408 at 32 s; this is a backstop).
_EXCHANGE_TIMEOUT_S = 40.0
_RESOLVE_TIMEOUT_S = 5.0
_UNREGISTER_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Account:
    """What an outbound call placed through a registration needs: who we are, how we
    prove it, and where requests go first."""

    name: str
    aor: str
    domain: str
    credentials: DigestCredentials = field(repr=False)
    outbound_proxy: str | None
    transport: str
    #: The registrar: where calls go first when there is no outbound proxy.
    registrar: str = ""


@dataclass
class _Entry:
    settings: RegistrationSettings
    registration: Registration
    task: asyncio.Task[None] | None = None
    peer: Peer | None = None


class Registrations:
    """Every configured registration; start after the SIP listeners, stop before closing."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        entries: Sequence[RegistrationSettings],
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._entries: list[_Entry] = []
        self._stopping = asyncio.Event()
        for settings in entries:
            password = read_password(settings, environ)  # ConfigError names the source
            register_secret(password)
            transport = settings.transport.upper()
            host, port = endpoint.via_address(transport)
            target = RegistrationTarget(
                name=settings.name,
                registrar=SipUri.parse(settings.registrar),
                aor=settings.aor,
                credentials=DigestCredentials(settings.auth_username, password, settings.realm),
                contact_user=settings.contact_user,
                expires_s=settings.expires,
                transport=transport,
                keepalive_s=settings.keepalive_s,
                retry_min_s=settings.retry_min_s,
                retry_max_s=settings.retry_max_s,
            )
            registration = Registration(target, contact_host=host, contact_port=port)
            self._entries.append(_Entry(settings, registration))

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        for entry in self._entries:
            if entry.settings.register:
                entry.task = asyncio.ensure_future(self._drive(entry))

    async def stop(self) -> None:
        """Unregister (`Expires: 0`) everything that is registered, within a few seconds."""
        self._stopping.set()
        for entry in self._entries:
            if entry.task is not None:
                entry.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await entry.task
        await asyncio.gather(*(self._unregister(e) for e in self._entries))

    # ------------------------------------------------------------------ views

    def status(self) -> dict[str, dict[str, object]]:
        """Per registration, for /health: state, registrar, expiry, last error; no secret."""
        now = asyncio.get_running_loop().time()
        result: dict[str, dict[str, object]] = {}
        for entry in self._entries:
            status = entry.registration.status(now)
            if not entry.settings.register:
                status["state"] = "outbound_only"
            result[entry.settings.name] = status
        return result

    def profile_for(self, request_uri: str) -> tuple[str, str | None] | None:
        """(registration name, its profile) when a call arrives at one of our contacts."""
        try:
            user = SipUri.parse(request_uri).user
        except ValueError:
            return None
        for entry in self._entries:
            if user is not None and user == entry.settings.contact_user:
                return entry.settings.name, entry.settings.profile
        return None

    def account(self, name: str) -> Account | None:
        for entry in self._entries:
            if entry.settings.name == name:
                target = entry.registration.target
                return Account(
                    name=name,
                    aor=entry.settings.aor,
                    domain=entry.settings.domain,
                    credentials=target.credentials,
                    outbound_proxy=entry.settings.outbound_proxy,
                    transport=target.transport,
                    registrar=entry.settings.registrar,
                )
        return None

    def names(self) -> list[str]:
        return [e.settings.name for e in self._entries]

    @property
    def up(self) -> int:
        """Registrations currently bound at their registrar."""
        return sum(1 for e in self._entries if e.registration.state is RegistrationState.REGISTERED)

    def __len__(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------------ driving

    async def _drive(self, entry: _Entry) -> None:
        loop = asyncio.get_running_loop()
        registration = entry.registration
        pending: SipRequest | None = registration.start(loop.time())
        while not self._stopping.is_set():
            while pending is not None:
                pending = await self._exchange(entry, pending)
            deadline = registration.next_deadline()
            delay = None if deadline is None else max(0.0, deadline - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            action = registration.on_timer(loop.time())
            if isinstance(action, SipRequest):
                pending = action
            elif isinstance(action, Keepalive):
                pending = await self._keepalive(entry, action)

    async def _exchange(self, entry: _Entry, request: SipRequest) -> SipRequest | None:
        """Send one REGISTER and feed its final answer back; returns what to send next."""
        registration = entry.registration
        loop = asyncio.get_running_loop()
        before = (registration.state, registration.last_error)
        peer = await self._peer(entry)
        if peer is None:
            registration.on_transport_failure(loop.time(), "cannot resolve the registrar")
            self._log_change(entry, before)
            return None
        self._add_route(entry, request)
        try:
            response = await asyncio.wait_for(
                self._endpoint.send_request(request, peer), _EXCHANGE_TIMEOUT_S
            )
        except (TimeoutError, asyncio.CancelledError, OSError) as exc:
            if isinstance(exc, asyncio.CancelledError) and self._stopping.is_set():
                raise
            registration.on_transport_failure(loop.time(), "no answer from the registrar")
            self._log_change(entry, before)
            return None
        if response.status == 408:
            # Almost always the transaction's own timeout: nobody answered at all.
            registration.on_transport_failure(loop.time(), "no answer from the registrar (408)")
            entry.peer = None  # resolve again next time: the address may have moved
            self._log_change(entry, before)
            return None
        following = registration.on_response(response, loop.time())
        self._log_change(entry, before)
        return following

    async def _keepalive(self, entry: _Entry, action: Keepalive) -> SipRequest | None:
        """CRLF on a connection, OPTIONS on UDP; a dead binding means register again now."""
        peer = await self._peer(entry)
        if peer is None:
            return None
        loop = asyncio.get_running_loop()
        if action.reliable:
            if not self._endpoint.send_keepalive(peer):
                return entry.registration.binding_lost(loop.time())
            return None
        options = self._options(entry)
        self._add_route(entry, options)
        try:
            response = await asyncio.wait_for(
                self._endpoint.send_request(options, peer), _EXCHANGE_TIMEOUT_S
            )
        except TimeoutError:
            response = None
        if response is None or response.status == 408:
            log.warning("registration_keepalive_unanswered", registration=entry.settings.name)
            return entry.registration.binding_lost(loop.time())
        return None

    async def _unregister(self, entry: _Entry) -> None:
        loop = asyncio.get_running_loop()
        request = entry.registration.stop(loop.time())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_UNREGISTER_TIMEOUT_S):
                while request is not None:
                    peer = await self._peer(entry)
                    if peer is None:
                        return
                    self._add_route(entry, request)
                    response = await self._endpoint.send_request(request, peer)
                    request = entry.registration.on_response(response, loop.time())
                log.info("registration_removed", registration=entry.settings.name)

    # ------------------------------------------------------------------ helpers

    async def _peer(self, entry: _Entry) -> Peer | None:
        """Where requests go: the outbound proxy if set, else the registrar (A/AAAA only)."""
        if entry.peer is not None:
            return entry.peer
        target = SipUri.parse(entry.settings.outbound_proxy or entry.settings.registrar)
        transport = entry.settings.transport.upper()
        port = target.port or (5061 if transport == "TLS" else 5060)
        loop = asyncio.get_running_loop()
        kind = socket.SOCK_STREAM if transport != "UDP" else socket.SOCK_DGRAM
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(target.host, port, family=socket.AF_INET, type=kind),
                _RESOLVE_TIMEOUT_S,
            )
        except (OSError, TimeoutError) as exc:
            log.warning(
                "registrar_unresolved",
                registration=entry.settings.name,
                host=target.host,
                error=str(exc) or type(exc).__name__,
            )
            return None
        address = str(infos[0][4][0])
        if transport == "TLS":
            # Verify the registrar's certificate against its name, not the address.
            self._endpoint.expect_tls_name(address, port, target.host)
        entry.peer = Peer(transport, address, port)
        return entry.peer

    def _add_route(self, entry: _Entry, request: SipRequest) -> None:
        proxy = entry.settings.outbound_proxy
        if proxy and request.headers.get("Route") is None:
            request.headers.add_first("Route", f"<{proxy};lr>")

    def _options(self, entry: _Entry) -> SipRequest:
        transport = entry.settings.transport.upper()
        host, port = self._endpoint.via_address(transport)
        headers = Headers()
        via = Via(transport, host, port, {"branch": new_branch(), "rport": None})
        headers.add("Via", str(via))
        headers.add("Max-Forwards", "70")
        tag = uuid.uuid4().hex[:10]
        headers.add("From", str(NameAddr(entry.settings.aor, None, {"tag": tag})))
        headers.add("To", f"<{entry.settings.registrar}>")
        headers.add("Call-ID", f"{uuid.uuid4().hex}@{host}")
        headers.add("CSeq", "1 OPTIONS")
        return SipRequest("OPTIONS", entry.settings.registrar, headers)

    def _log_change(self, entry: _Entry, before: tuple[RegistrationState, str | None]) -> None:
        registration = entry.registration
        if (registration.state, registration.last_error) == before:
            return
        name = entry.settings.name
        if registration.state is RegistrationState.REGISTERED:
            log.info(
                "registration_up",
                registration=name,
                registrar=entry.settings.registrar,
                expires_s=registration.granted_s,
            )
        elif registration.state is RegistrationState.FAILED:
            status = registration.status(asyncio.get_running_loop().time())
            log.warning(
                "registration_failed",
                registration=name,
                registrar=entry.settings.registrar,
                reason=registration.last_error,
                failures=registration.failures,
                retry_in_s=status.get("retry_in_s"),
            )
