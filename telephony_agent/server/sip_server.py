"""The SIP answering service: routes every request to the right call or answers it itself.

What lands here has already passed the transaction layer, so retransmissions
are gone. This class is the SIP front door of the switchboard. It decides, per request:
a new INVITE is offered to the switchboard and becomes an `InboundCall` (or
486/503 when the switchboard refuses it); an in-dialog request goes to its call
(or 481 when there is none); CANCEL finds its INVITE; OPTIONS is answered for
health checks; anything else gets 405 or 501 so the peer learns at once instead
of retransmitting into the void. Capacity, profiles and the Realtime session are
the switchboard's business, not this module's; what this module adds in front of
them are the limits on calls that are set up but not (yet) ACKed, per source
address and in total (`sip_limits.py`), and what the kernel dropped on our sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from telephony_agent.audio.clock import MediaClock
from telephony_agent.call.record import TranscriptLine
from telephony_agent.config import codec_preference, parse_host_port
from telephony_agent.media.rtp import PortAllocator, RtpLeg
from telephony_agent.netbuffers import udp_drops
from telephony_agent.observability.sip_traffic import SipTraffic
from telephony_agent.server.bridge_target import BridgeTarget
from telephony_agent.server.dialing import DialError, DialRequest, RateLimiter, plan_call
from telephony_agent.server.dialog_call import ALLOW, CallSummary, DialogCall
from telephony_agent.server.gatekeeper import Gatekeeper
from telephony_agent.server.inbound_call import InboundCall
from telephony_agent.server.outbound_call import OutboundCall
from telephony_agent.server.request_names import dialled_number, header_tag, user_part
from telephony_agent.server.sip_limits import PendingLimits
from telephony_agent.sip.dialog import Dialog, make_response, peer_for_uri
from telephony_agent.sip.endpoint import SipEndpoint
from telephony_agent.sip.message import SipRequest, SipResponse, SipUri
from telephony_agent.sip.tls import client_context, server_context
from telephony_agent.sip.transaction import Peer, ServerTransaction, Timers
from telephony_agent.switchboard import Admission, CallRequest, Refusal, Switchboard
from telephony_agent.trunk.registrations import Registrations

__all__ = ["FINISHED_KEPT", "AgentSipServer", "ServerStats"]

log = structlog.get_logger(__name__)

#: Summaries of finished calls kept in memory.
FINISHED_KEPT = 50
#: Methods we understand but do not serve (405 with Allow); anything else is 501.
_KNOWN_UNSUPPORTED = frozenset({"REGISTER", "SUBSCRIBE", "PUBLISH", "MESSAGE", "PRACK", "REFER"})
#: SIP option tags we implement (RFC 3261 §8.2.2.3: anything else in Require gets 420).
_SUPPORTED_EXTENSIONS = frozenset({"replaces", "timer"})


class _CountingEndpoint(SipEndpoint):
    """The SIP endpoint, counting each response we send by method and status for
    `/metrics` (every response of the server and its calls passes `respond`)."""

    def __init__(self, traffic: SipTraffic, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.traffic = traffic

    def respond(self, transaction: ServerTransaction, response: SipResponse) -> None:
        self.traffic.response(transaction.request.method, response.status)
        super().respond(transaction, response)


@dataclass
class ServerStats:
    invites: int = 0
    answered: int = 0
    rejected_busy: int = 0
    rejected_other: int = 0
    completed: int = 0
    unknown_dialog: int = 0
    outbound: int = 0
    #: Sum of answered calls' durations, for CPU-per-call-second figures.
    call_seconds: float = 0.0
    #: Realtime sessions closed because the ACK of our 200 did not come in time.
    sessions_closed_unacked: int = 0


class AgentSipServer:
    """Listens for SIP, answers calls with the agent, and keeps count."""

    def __init__(
        self,
        switchboard: Switchboard,
        *,
        on_transcript: Callable[[str, TranscriptLine], None] | None = None,
    ) -> None:
        self.switchboard = switchboard
        #: Listening and media settings are read once, at start: a reload changes
        #: profiles, tools and capacity, never the sockets.
        settings = switchboard.deployment.settings
        self.settings = settings
        self.codecs = codec_preference(settings)
        self.stats = ServerStats()
        self.traffic = SipTraffic()
        self.endpoint: SipEndpoint = _CountingEndpoint(
            self.traffic,
            self,
            timers=Timers(t1=settings.sip.t1_ms / 1000.0),
            public_host=settings.sip.public_address,
            user_agent=settings.sip.user_agent,
            socket_buffer_bytes=settings.sip.socket_buffer_bytes,
        )
        self.limits = PendingLimits(
            per_source=settings.sip.max_pending_per_source,
            total=settings.sip.max_pending_calls,
            rate_per_s=settings.sip.invite_rate_per_source,
        )
        #: Calls counted by `limits` until their ACK (or their end).
        self._pending: set[InboundCall] = set()
        self.ports = PortAllocator(settings.rtp.port_min, settings.rtp.port_max)
        self.media_address = "127.0.0.1"
        self.bind_host = "0.0.0.0"
        self._calls: dict[tuple[str, str, str], DialogCall] = {}
        self._by_invite: dict[ServerTransaction, InboundCall] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_transcript = on_transcript
        self._accepting = True
        #: The last few calls' summaries (for the demo and tests). A call record holds
        #: two 64 KB latency rings, and the 1,000 kept before grew memory under a flood
        #: by tens of megabytes that never came back. Records are kept by the
        #: switchboard's listeners (records/), not here.
        self.finished: deque[CallSummary] = deque(maxlen=FINISHED_KEPT)
        #: Set once the listeners are up when `[[registrations]]` exist; calls arriving
        #: at a registration's contact are answered by that registration's profile.
        self.registrations: Registrations | None = None
        #: Read at construction: device passwords are needed before anything listens.
        self.gate = Gatekeeper(settings)
        self._dial_rate = RateLimiter(settings.sip.max_outbound_cps)

    @property
    def clock(self) -> MediaClock:
        return self.switchboard.clock

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        host, port = parse_host_port("sip.listen", self.settings.sip.listen)
        sip = self.settings.sip
        transports = sip.transports.lower().split("+")
        host, port = await self._listen_udp_tcp(host, port, transports)
        ca_file = Path(sip.tls_ca_file) if sip.tls_ca_file else None
        self.endpoint.tls_client_context = client_context(
            verify=sip.tls_verify_server, ca_file=ca_file
        )
        if "tls" in transports and sip.tls_certificate and sip.tls_key:
            context = server_context(
                Path(sip.tls_certificate),
                Path(sip.tls_key),
                verify_client=sip.tls_verify_client,
                ca_file=ca_file,
            )
            await self.endpoint.listen_tls(host, sip.tls_port, context)
        self.bind_host = host
        public = self.settings.sip.public_address
        if public:
            self.media_address = public
        elif host not in ("0.0.0.0", "::"):
            self.media_address = host
        else:
            self.media_address = _primary_address()
        log.info(
            "sip_listening",
            address=f"{host}:{port}",
            transports=sip.transports,
            tls_address=_format_address(self.endpoint.tls_address),
            media_address=self.media_address,
            max_calls=self.settings.sip.max_calls,
        )
        buffers = self.endpoint.udp_buffers
        if buffers is not None and buffers.capped:
            log.warning(
                "sip_socket_buffer_capped",
                requested=buffers.requested,
                receive=buffers.receive,
                send=buffers.send,
                hint="raise net.core.rmem_max and net.core.wmem_max, or run with CAP_NET_ADMIN",
            )

    async def _listen_udp_tcp(self, host: str, port: int, transports: list[str]) -> tuple[str, int]:
        """UDP and TCP on one port. With port 0 the kernel picks the UDP port, and the
        same TCP port may be taken by someone else: pick again a few times then."""
        attempts = 5 if port == 0 and "udp" in transports and "tcp" in transports else 1
        while True:
            bound_host, bound_port = host, port
            if "udp" in transports:
                bound_host, bound_port = await self.endpoint.listen_udp(host, port)
            if "tcp" not in transports:
                return bound_host, bound_port
            try:
                return await self.endpoint.listen_tcp(bound_host, bound_port)
            except OSError:
                attempts -= 1
                if attempts <= 0:
                    raise
                await self.endpoint.close_udp()

    @property
    def sip_port(self) -> int:
        address = (
            self.endpoint.udp_address or self.endpoint.tcp_address or self.endpoint.tls_address
        )
        return address[1] if address else 0

    async def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stop taking calls, hang up the ones in progress, and close the sockets."""
        self._accepting = False
        self.switchboard.drain()
        for call in list(self._calls.values()):
            call.gave_up.set()  # a call still waiting for its ACK stops waiting
            if call.leg is not None:
                call.leg.end("shutdown")
            elif not call.answered:
                call.cancelled.set()
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout_s)
        for task in self._tasks:
            task.cancel()
        if self.registrations is not None:
            await self.registrations.stop()
        await self.endpoint.close()

    @property
    def active_calls(self) -> int:
        return sum(1 for call in self._calls.values() if not call.ended)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        """Forget the task; an exception it ended with is counted, not left to asyncio's
        "exception was never retrieved" at ERROR."""
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.endpoint.last_resort.caught_exception("sip_task", exc)

    # ------------------------------------------------------------------ call plumbing

    async def open_rtp(self) -> RtpLeg:
        return await RtpLeg.open(
            allocator=self.ports,
            bind_host=self.bind_host,
            clock=self.clock,
            inactivity_timeout_s=self.settings.rtp.inactivity_timeout_s,
            socket_buffer_bytes=self.settings.rtp.socket_buffer_bytes,
        )

    def rtp_drops(self) -> int:
        """Datagrams the kernel dropped on the RTP/RTCP sockets of the calls in progress."""
        inodes = [
            i for c in self._calls.values() if c.rtp is not None for i in c.rtp.socket_inodes()
        ]
        return udp_drops(inodes)

    @property
    def pending_calls(self) -> int:
        """Calls ringing or answered and waiting for their ACK."""
        return self.limits.pending

    def peer_for(self, dialog: Dialog) -> Peer:
        return peer_for_uri(dialog.next_hop_uri(), dialog.transport)

    # ------------------------------------------------------------------ requests in

    def on_request(
        self, request: SipRequest, transaction: ServerTransaction | None, source: Peer
    ) -> None:
        method = request.method
        self.traffic.request(method)
        if transaction is None:  # an ACK for a 2xx
            call = self._find_dialog(request)
            if call is not None:
                call.on_ack(request)
                if isinstance(call, InboundCall):
                    self._settle(call)
            return
        if method == "ACK":
            return
        to_tag = header_tag(request.headers.get("To"))
        if not to_tag and not self._through_gate(request, transaction, source):
            return
        if request.max_forwards == 0 and method != "OPTIONS":
            self.endpoint.respond(transaction, make_response(request, 483))
            return
        if to_tag:
            call = self._find_dialog(request)
            if call is None:
                self.stats.unknown_dialog += 1
                self.endpoint.respond(transaction, make_response(request, 481))
            else:
                call.on_in_dialog(request, transaction)
            return
        if method == "INVITE":
            self._on_invite(request, transaction, source)
        elif method == "CANCEL":
            self._on_cancel(request, transaction)
        elif method == "OPTIONS":
            self.endpoint.respond(transaction, self._options_response(request))
        elif method == "BYE":
            self.stats.unknown_dialog += 1
            self.endpoint.respond(transaction, make_response(request, 481))
        else:
            self.reject_method(request, transaction)

    def _through_gate(
        self, request: SipRequest, transaction: ServerTransaction, source: Peer
    ) -> bool:
        """The allowlist, device authentication and bans; False when answered or dropped."""
        verdict = self.gate.check(request, source, self.endpoint.layer_time())
        if verdict.passes:
            return True
        if verdict.status > 0:
            response = make_response(request, verdict.status)
            for challenge in verdict.challenges:
                response.headers.add("WWW-Authenticate", challenge)
            self.endpoint.respond(transaction, response)
        return False

    def reject_method(self, request: SipRequest, transaction: ServerTransaction) -> None:
        if request.method in _KNOWN_UNSUPPORTED:
            response = make_response(request, 405)
            response.headers.add("Allow", ALLOW)
        else:
            response = make_response(request, 501)
        self.endpoint.respond(transaction, response)

    def on_ack_timeout(self, transaction: ServerTransaction) -> None:
        call = self._by_invite.get(transaction)
        if call is not None:
            call.on_ack_timeout()

    @property
    def listening(self) -> bool:
        """True from start until shutdown while a SIP socket is bound (for readiness)."""
        endpoint = self.endpoint
        bound = endpoint.udp_address is not None or endpoint.tcp_address is not None
        return bound and self._accepting

    def _options_response(self, request: SipRequest) -> Any:
        if not self._accepting or self.switchboard.draining or self.switchboard.overloaded:
            # A dispatcher probing with OPTIONS marks us down before sending another call.
            response = make_response(request, 503)
            response.headers.add("Retry-After", str(self.settings.sip.retry_after_s))
            return response
        response = make_response(request, 200)
        response.headers.add("Allow", ALLOW)
        response.headers.add("Accept", "application/sdp")
        response.headers.add("Supported", ", ".join(sorted(_SUPPORTED_EXTENSIONS)))
        return response

    def _on_invite(self, request: SipRequest, txn: ServerTransaction, source: Peer) -> None:
        self.stats.invites += 1
        unsupported = [
            tag
            for value in request.headers.get_all("Require")
            for tag in [value.strip().lower()]
            if tag and tag not in _SUPPORTED_EXTENSIONS
        ]
        if unsupported:
            response = make_response(request, 420)
            response.headers.add("Unsupported", ", ".join(unsupported))
            self.stats.rejected_other += 1
            self.endpoint.respond(txn, response)
            return
        try:
            SipUri.parse(request.uri)
        except ValueError:
            self.endpoint.respond(txn, make_response(request, 416))
            return
        if not self._accepting:
            self._reject_busy(request, txn)
            return
        if not self._within_limits(request, txn, source):
            return
        # Through a registration the Request-URI is our contact; the number the caller
        # dialled is then in To, and the registration may name the profile.
        through = self.registrations.profile_for(request.uri) if self.registrations else None
        admission = self.switchboard.admit(
            CallRequest(
                kind="sip",
                external_id=request.call_id,
                caller=user_part(request.headers.get("From")),
                dialled=user_part(request.headers.get("To"))
                if through
                else dialled_number(request),
                remote=f"{source.host}:{source.port}",
                profile=through[1] if through else None,
            )
        )
        if isinstance(admission, Refusal):
            self._reject_busy(request, txn, admission)
            return
        self.endpoint.respond(txn, make_response(request, 100))
        try:
            call = InboundCall(
                self,
                request,
                txn,
                source,
                admission,
                on_transcript=self._transcript_callback(request.call_id),
            )
        except Exception:
            # The slot must go back, or every such INVITE would lock one out for good.
            admission.release("internal_error")
            raise
        self._calls[call.key] = call
        self._by_invite[txn] = call
        self.limits.started(source.host)
        self._pending.add(call)
        self.spawn(self._run_call(call, txn))

    def _within_limits(self, request: SipRequest, txn: ServerTransaction, source: Peer) -> bool:
        """Rate and pending-call limits per address (see `sip_limits.py`); refusals are
        stateless so a flood from a spoofed address gets one datagram per request."""
        verdict = self.limits.check(source.host, asyncio.get_running_loop().time())
        if verdict == "ok":
            return True
        log.debug("invite_refused_by_limit", source=source.host, limit=verdict)
        if verdict == "rate":
            self.endpoint.drop(txn)
            return False
        why = "from your address" if verdict == "source_pending" else "in total"
        response = make_response(
            request, 503, f"Service Unavailable (too many calls pending {why})"
        )
        response.headers.add("Retry-After", "5")
        self.endpoint.respond_statelessly(txn, response)
        return False

    def _settle(self, call: InboundCall) -> None:
        """The call no longer counts as pending: ACKed, or over."""
        if call in self._pending:
            self._pending.discard(call)
            self.limits.settled(call.source.host)

    def _reject_busy(
        self, request: SipRequest, txn: ServerTransaction, refusal: Refusal | None = None
    ) -> None:
        self.stats.rejected_busy += 1
        sip, limits = self.settings.sip, self.switchboard.overload.limits
        if refusal is not None and refusal.reason == "overloaded":
            status, retry_after_s = limits.refuse_with, limits.retry_after_s
        else:
            unavailable = not self._accepting or self.switchboard.draining
            status = 503 if sip.over_capacity == "unavailable" or unavailable else 486
            retry_after_s = sip.retry_after_s
        response = make_response(request, status)
        if status == 503:
            response.headers.add("Retry-After", str(retry_after_s))
        if refusal is None or refusal.reason != "overloaded":  # overload logs its own edges
            log.info("call_rejected_busy", status=status, active=self.switchboard.active_calls)
        self.endpoint.respond(txn, response)

    async def _run_call(self, call: InboundCall, txn: ServerTransaction) -> None:
        try:
            summary = await call.run()
            self.finished.append(summary)
            self.stats.completed += 1
            if summary.record is not None:
                self.stats.call_seconds += summary.record.duration_s
        finally:
            self._settle(call)
            # Keep the dialog a little while so late retransmitted BYEs still get 200, not 481.
            await asyncio.sleep(0)
            self._by_invite.pop(txn, None)
            loop = asyncio.get_running_loop()
            loop.call_later(32 * self.endpoint.layer.timers.t1, self._calls.pop, call.key, None)

    # ------------------------------------------------------------------ calls out

    def place_call(self, dial: DialRequest) -> OutboundCall:
        """Admit and start an outbound call; DialError says why not (with an HTTP status)."""
        if not self._accepting or self.switchboard.draining:
            raise DialError("the server is shutting down", 503)
        plan = plan_call(dial, registrations=self.registrations, local_host=self.media_address)
        if not self._dial_rate.take(asyncio.get_running_loop().time()):
            cps = self.settings.sip.max_outbound_cps
            raise DialError(f"more than sip.max_outbound_cps = {cps:g} calls per second", 429)
        admission = self.switchboard.admit(plan.request)
        if isinstance(admission, Refusal):
            status = 404 if admission.reason == "unknown_profile" else 503
            raise DialError(admission.message, status)
        call = OutboundCall(
            self,
            admission,
            plan.target,
            plan.route,
            ring_timeout_s=self.settings.sip.ring_timeout_s,
            on_dialog=self.track_dialog,
            on_transcript=self._transcript_callback(plan.request.external_id),
        )
        self.stats.outbound += 1
        self.spawn(self._run_outbound(call))
        return call

    def track_dialog(self, call: DialogCall) -> None:
        self._calls[call.key] = call

    def forget_dialog(self, call: DialogCall) -> None:
        """Stop routing to a dialog once retransmissions of its last requests are over."""
        loop = asyncio.get_running_loop()
        loop.call_later(32 * self.endpoint.layer.timers.t1, self._calls.pop, call.key, None)

    def dial_target(
        self, admission: Admission, target: SipUri, from_uri: str, transport: str, ring_s: float
    ) -> BridgeTarget:
        """The target leg of a bridged transfer (`DialogCall` cannot import it)."""
        return BridgeTarget(self, admission, target, from_uri, transport, ring_s)

    async def _run_outbound(self, call: OutboundCall) -> None:
        try:
            summary = await call.run()
            self.finished.append(summary)
            if summary.record is not None:
                self.stats.call_seconds += summary.record.duration_s
        finally:
            await asyncio.sleep(0)
            if call.answered:
                self.forget_dialog(call)

    def _on_cancel(self, request: SipRequest, txn: ServerTransaction) -> None:
        invite_txn = self.endpoint.layer.find_invite(request)
        call = self._by_invite.get(invite_txn) if invite_txn is not None else None
        if call is None:
            self.endpoint.respond(txn, make_response(request, 481))
            return
        # §9.2: the 200 to a CANCEL carries the tag of the INVITE's responses.
        self.endpoint.respond(txn, make_response(request, 200, to_tag=call.local_tag))
        call.on_cancel()

    def _find_dialog(self, request: SipRequest) -> DialogCall | None:
        local_tag = header_tag(request.headers.get("To")) or ""
        remote_tag = header_tag(request.headers.get("From")) or ""
        return self._calls.get((request.call_id, local_tag, remote_tag))

    def _transcript_callback(self, call_id: str) -> Callable[[TranscriptLine], None] | None:
        callback = self._on_transcript
        if callback is None:
            return None
        return lambda line: callback(call_id, line)


def _format_address(address: tuple[str, int] | None) -> str | None:
    return f"{address[0]}:{address[1]}" if address else None


def _primary_address() -> str:
    """The address other hosts reach us on when we listen on all interfaces.

    A connected UDP socket picks the outbound interface without sending anything.
    """
    import socket

    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        address = str(probe.getsockname()[0])
        if address and not address.startswith("0."):
            return address
    return "127.0.0.1"
