"""One answered SIP call, from INVITE to BYE.

The order is chosen for latency: 100 Trying goes out at once (the server sends
it), the SDP offer is negotiated and the RTP socket opened before anything is
promised, 180 Ringing is sent while the Realtime session connects, and 200 OK
only when the model is ready to listen — so the caller's first word is never
lost to a websocket handshake. A CANCEL at any point before 200 wins with 487.
The Call itself starts when the ACK arrives: no greeting is spoken and no RTP
sent to an address nobody has confirmed, and a session whose ACK does not come
is closed early (see `pending_session.py`). A media host given by name is
looked up off the loop, or the offer is refused with 488.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from telephony_agent.call.bridge import Call
from telephony_agent.call.record import CallRecord, TranscriptLine
from telephony_agent.config import Settings
from telephony_agent.logs import bind_call
from telephony_agent.media.rtp import PortsExhausted, RtpLeg
from telephony_agent.realtime.client import RealtimeSession
from telephony_agent.server.info_dtmf import INFO_DTMF_TYPES, parse_info_dtmf
from telephony_agent.server.pending_session import PendingSession, close_quietly
from telephony_agent.server.sip_leg import SipCallLeg
from telephony_agent.sip.dialog import Dialog, DialogError, make_response, new_tag
from telephony_agent.sip.endpoint import SipEndpoint
from telephony_agent.sip.message import Headers, NameAddr, SipRequest
from telephony_agent.sip.resolver import ResolveError, is_ip_literal
from telephony_agent.sip.sdp import (
    Negotiated,
    SdpError,
    SessionDescription,
    accept_answer,
    build_offer,
    negotiate_answer,
    parse_sdp,
    with_direction,
)
from telephony_agent.sip.transaction import Peer, ServerTransaction
from telephony_agent.switchboard import Admission

__all__ = ["CallSummary", "InboundCall", "SipHost"]

log = structlog.get_logger(__name__)

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, NOTIFY"
SUPPORTED = "replaces"
BYE_TIMEOUT_S = 8.0


@dataclass
class CallSummary:
    """What the server keeps about a finished call (for logs, tests and health)."""

    call_id: str
    codec: str
    answered: bool
    end_reason: str
    record: CallRecord | None


class SipStatsSink(Protocol):
    answered: int
    sessions_closed_unacked: int


class SipHost(Protocol):
    """What a call needs from the SIP server that owns it (`AgentSipServer`).

    A protocol, so this module never imports the server that imports it.
    """

    endpoint: SipEndpoint
    settings: Settings
    media_address: str
    bind_host: str
    codecs: tuple[str, ...]

    @property
    def stats(self) -> SipStatsSink: ...

    async def open_rtp(self) -> RtpLeg: ...

    def peer_for(self, dialog: Dialog) -> Peer: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    def reject_method(self, request: SipRequest, transaction: ServerTransaction) -> None: ...


class InboundCall:
    """The UAS side of one call: negotiation, answer, media, in-dialog requests, BYE."""

    def __init__(
        self,
        server: SipHost,
        invite: SipRequest,
        transaction: ServerTransaction,
        source: Peer,
        admission: Admission,
        *,
        on_transcript: Callable[[TranscriptLine], None] | None = None,
    ) -> None:
        self.server = server
        self.admission = admission
        self.invite = invite
        self.transaction = transaction
        self.source = source
        self.local_tag = new_tag()
        self.call_id = invite.call_id
        # The whole SIP Call-ID: a prefix could be shared by two calls from one gateway.
        self.short_id = self.call_id[:128]
        self.log = log.bind(call_id=self.short_id)
        host, port = server.endpoint.via_address(source.transport)
        self.local_contact = f"sip:agent@{host}:{port}"
        if source.transport == "TCP":
            self.local_contact += ";transport=tcp"
        self.dialog = Dialog.for_uas(invite, self.local_tag, self.local_contact, source.transport)
        self.negotiated: Negotiated | None = None
        self.leg: SipCallLeg | None = None
        self.rtp: RtpLeg | None = None
        self.call: Call | None = None
        self.answered = False
        self.ended = False
        self.end_reason = ""
        self.cancelled = asyncio.Event()
        self.acked = asyncio.Event()
        #: Set when the call ends before its ACK came (BYE, or the ACK timed out).
        self.gave_up = asyncio.Event()
        self.pending = PendingSession(
            lambda: self.admission.new_session(),
            t1_s=server.endpoint.layer.timers.t1,
            log=self.log,
            on_closed_unacked=self._count_closed_session,
        )
        self._bye_sent = False
        self._bye_received = False
        self._sdp_version = 1
        self._session_id = int(time.time())
        self._on_transcript = on_transcript
        self.record: CallRecord | None = None
        self._ack: SipRequest | None = None
        #: When our 200 OK first went out (for the ACK's delay in the log).
        self._ok_sent_at: float | None = None
        #: Our latest session description (answer, or our offer in a delayed-offer call).
        self._local_sdp: SessionDescription | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.dialog.key

    # ------------------------------------------------------------------ setup

    def _respond(self, status: int, reason: str | None = None, **kwargs: object) -> None:
        headers = Headers()
        if status != 100 and status < 300:
            headers.add("Contact", f"<{self.local_contact}>")
        if status in (200, 180, 183):
            headers.add("Allow", ALLOW)
            headers.add("Supported", SUPPORTED)
        extra = kwargs.pop("headers", None)
        if isinstance(extra, Headers):
            for name, value in extra:
                headers.add(name, value)
        body = kwargs.pop("body", b"")
        assert isinstance(body, bytes)
        response = make_response(
            self.invite,
            status,
            reason,
            to_tag=self.local_tag,
            headers=headers,
            body=body,
            content_type="application/sdp" if body else None,
        )
        self.server.endpoint.respond(self.transaction, response)
        if status == 200 and self._ok_sent_at is None:
            self._ok_sent_at = time.monotonic()

    async def run(self) -> CallSummary:
        """Set the call up, run it, tear it down. Never raises."""
        bind_call(self.short_id)
        try:
            await self._run()
        except Exception as exc:
            self.server.endpoint.last_resort.caught_exception("inbound_call", exc)
            if not self.answered and not self.cancelled.is_set():
                with contextlib.suppress(Exception):
                    self._respond(500)
            self.end_reason = self.end_reason or "internal_error"
        finally:
            await self._cleanup()
        codec = self.negotiated.codec if self.negotiated else ""
        return CallSummary(self.call_id, codec, self.answered, self.end_reason, self.record)

    async def _run(self) -> None:
        settings = self.server.settings
        if self.invite.body:
            content_type = (self.invite.headers.get("Content-Type") or "").split(";")[0]
            if content_type.strip().lower() != "application/sdp":
                headers = Headers([("Accept", "application/sdp")])
                self._respond(415, headers=headers)
                self.end_reason = "unsupported_media_type"
                return
        try:
            rtp = await self.server.open_rtp()
        except PortsExhausted:
            self._respond(503, "Service Unavailable (no free media ports)")
            self.end_reason = "no_media_ports"
            return
        self.rtp = rtp
        if self.invite.body:
            session = await self._answer_offer(rtp, settings.sip.answer_timeout_s)
        else:
            session = await self._offer_in_200(rtp, settings.sip.answer_timeout_s)
        if session is None or self.negotiated is None or self.leg is None:
            return
        self.record = await self.admission.run(
            self.leg, session, on_transcript=self._on_transcript, on_call=self._set_call
        )
        self.end_reason = self.end_reason or self.record.end_reason

    def _set_call(self, call: Call) -> None:
        self.call = call

    async def _answer_offer(self, rtp: RtpLeg, timeout_s: float) -> RealtimeSession | None:
        """The usual case: the INVITE carries the offer, our 200 the answer."""
        try:
            n = await self._with_address(
                negotiate_answer(
                    parse_sdp(self.invite.body),
                    local_address=self.server.media_address,
                    local_port=rtp.local_port,
                    codec_preference=self.server.codecs,
                    session_id=self._session_id,
                    session_version=self._sdp_version,
                )
            )
        except (SdpError, ResolveError) as exc:
            self._respond(488, f"Not Acceptable Here ({_phrase(str(exc))})")
            self.end_reason = "sdp_rejected"
            return None
        self.negotiated = n
        self._local_sdp = n.answer
        self._start_media(rtp, n)
        self._respond(180)
        self._log_ringing(n)
        session = await self._connect_realtime(timeout_s)
        if session is None:
            return None
        self._respond(200, body=n.answer.to_bytes())
        self._mark_answered(n)
        return await self._until_acked(session)

    async def _with_address(self, n: Negotiated) -> Negotiated:
        """`n` with its media host as an address: a name is looked up off the loop
        (RFC 8866 allows FQDNs in c=), and one that does not resolve raises."""
        host, port = n.remote_rtp
        if is_ip_literal(host):
            return n
        family = socket.AF_INET6 if ":" in self.server.bind_host else socket.AF_INET
        try:
            address = await self.server.endpoint.resolver.resolve(host, family)
        except ResolveError as exc:
            raise ResolveError(f"media host {exc}") from None
        self.log.info("media_host_resolved", host=host[:60], address=address)
        return dataclasses.replace(n, remote_rtp=(address, port))

    async def _until_acked(self, session: RealtimeSession) -> RealtimeSession | None:
        """The session the call runs with once the ACK is in; None ends the call."""
        ready = await self.pending.until_acked(
            session,
            self.acked,
            self.gave_up,
            reconnect_timeout_s=self.server.settings.sip.answer_timeout_s,
        )
        if ready is None:
            self.end_reason = self.end_reason or (
                "realtime_unavailable" if self.acked.is_set() else "ack_timeout"
            )
        return ready

    async def _offer_in_200(self, rtp: RtpLeg, timeout_s: float) -> RealtimeSession | None:
        """Delayed offer (an INVITE without SDP, common on some trunks): we offer in the
        200 OK and the caller answers in its ACK (RFC 3261 §13.2.1)."""
        offer = build_offer(
            local_address=self.server.media_address,
            local_port=rtp.local_port,
            codecs=self.server.codecs,
            session_id=self._session_id,
            session_version=self._sdp_version,
        )
        self._local_sdp = offer
        self._respond(180)
        connected = await self._connect_realtime(timeout_s)
        if connected is None:
            return None
        self._respond(200, body=offer.to_bytes())
        self.answered = True
        session = await self._until_acked(connected)
        if session is None:
            return None
        try:
            ack = self._ack
            if ack is None or not ack.body:
                raise SdpError("the ACK carried no SDP answer")
            negotiated = await self._with_address(accept_answer(offer, parse_sdp(ack.body)))
        except (SdpError, ResolveError) as exc:
            self.log.warning("late_answer_unusable", why=_phrase(str(exc)))
            self.end_reason = "no_answer_in_ack"
            await close_quietly(session)
            return None
        self.negotiated = negotiated
        self._start_media(rtp, negotiated)
        self._mark_answered(negotiated)
        return session

    def _count_closed_session(self) -> None:
        self.server.stats.sessions_closed_unacked += 1

    def _start_media(self, rtp: RtpLeg, n: Negotiated) -> None:
        rtp.configure(
            codec=n.codec,
            payload_type=n.payload_type,
            telephone_event_pt=n.telephone_event_payload_type,
            remote=n.remote_rtp,
        )
        rtp.set_direction(send=n.can_send, receive=n.can_receive)
        self.leg = SipCallLeg(rtp, hangup=self._hang_up, transfer=self._transfer)

    def _log_ringing(self, n: Negotiated) -> None:
        self.log.info(
            "call_ringing",
            caller=_user_of(self.invite.headers.get("From")),
            codec=n.codec,
            remote=f"{n.remote_rtp[0]}:{n.remote_rtp[1]}" if n.remote_rtp else "unknown",
        )

    def _mark_answered(self, n: Negotiated) -> None:
        self.answered = True
        self.server.stats.answered += 1
        self.log.info("call_answered", codec=n.codec)

    async def _connect_realtime(self, timeout_s: float) -> RealtimeSession | None:
        """Connect while ringing; a CANCEL or a failure ends the attempt cleanly."""
        connected = await self.pending.connect(timeout_s, self.cancelled)
        if connected.session is not None:
            return connected.session
        if connected.why == "cancelled":
            self.end_reason = "cancelled"
            return None
        self.log.warning("realtime_unavailable", why=connected.why)
        headers = Headers([("Retry-After", str(self.server.settings.sip.retry_after_s))])
        self._respond(503, "Service Unavailable (speech model not reachable)", headers=headers)
        self.end_reason = "realtime_unavailable"
        return None

    # ------------------------------------------------------------------ signalling in

    def on_cancel(self) -> None:
        """CANCEL before our 200: 487 for the INVITE; after it, the CANCEL is moot."""
        if self.answered or self.cancelled.is_set():
            return
        self.cancelled.set()
        self._respond(487)
        self.log.info("call_cancelled")

    def on_ack(self, request: SipRequest) -> None:
        if self._ack is None:
            self._ack = request
            if self._ok_sent_at is not None:
                waited = time.monotonic() - self._ok_sent_at
                self.log.info("call_acked", after_ms=round(waited * 1000.0, 1))
        self.acked.set()

    def on_ack_timeout(self) -> None:
        """Our 200 OK was never acknowledged: §13.3.1.4 says end the call with BYE."""
        self.log.warning("call_not_acked")
        self.end_reason = "ack_timeout"
        self.gave_up.set()
        if self.leg is not None:
            self.leg.end("ack_timeout")
        self._spawn_bye("ack_timeout")

    def on_in_dialog(self, request: SipRequest, txn: ServerTransaction) -> None:
        endpoint = self.server.endpoint
        try:
            self.dialog.check_remote_cseq(request)
        except DialogError as exc:
            endpoint.respond(txn, make_response(request, 500, f"Server Internal Error ({exc})"))
            return
        method = request.method
        if method == "BYE":
            self._bye_received = True
            endpoint.respond(txn, make_response(request, 200))
            self.end_reason = self.end_reason or "caller_hangup"
            self.log.info("bye_received")
            self.gave_up.set()
            if self.leg is not None:
                self.leg.end("caller_hangup")
            if not self.answered:
                self.cancelled.set()
        elif method in ("INVITE", "UPDATE"):
            self._on_reoffer(request, txn)
        elif method == "INFO":
            self._on_info(request, txn)
        elif method in ("OPTIONS", "NOTIFY"):
            response = make_response(request, 200)
            if method == "OPTIONS":
                response.headers.add("Allow", ALLOW)
                response.headers.add("Accept", "application/sdp")
            endpoint.respond(txn, response)
        else:
            self.server.reject_method(request, txn)

    def _on_reoffer(self, request: SipRequest, txn: ServerTransaction) -> None:
        """re-INVITE / UPDATE: hold, unhold, a new address or codec, or a session refresh."""
        endpoint = self.server.endpoint
        rtp = self.rtp
        current = self.negotiated
        if rtp is None or current is None:
            endpoint.respond(txn, make_response(request, 491))
            return
        if not request.body:
            # Session refresh (RFC 4028) or an offer-less re-INVITE: repeat our description.
            self._sdp_version += 1
            local = self._local_sdp or current.answer
            body = with_direction(local, current.direction, self._sdp_version).to_bytes()
            self._answer_reoffer(request, txn, body)
            return
        try:
            offer = parse_sdp(request.body)
            # Keep the call's sample rate: the Call's resamplers were built for it.
            same_rate = [c for c in self.server.codecs if _rate(c) == _rate(current.codec)]
            preference = [current.codec, *[c for c in same_rate if c != current.codec]]
            negotiated = negotiate_answer(
                offer,
                local_address=self.server.media_address,
                local_port=rtp.local_port,
                codec_preference=preference,
                session_id=self._session_id,
                session_version=self._sdp_version + 1,
            )
        except SdpError as exc:
            self._refuse_reoffer(request, txn, exc)
            return
        if is_ip_literal(negotiated.remote_rtp[0]):
            self._apply_reoffer(request, txn, negotiated)
        else:
            self.server.spawn(self._reoffer_after_lookup(request, txn, negotiated))

    def _refuse_reoffer(
        self, request: SipRequest, txn: ServerTransaction, exc: SdpError | ResolveError
    ) -> None:
        # RFC 3261 §14.2: a rejected re-offer leaves the session as it was.
        response = make_response(request, 488, f"Not Acceptable Here ({_phrase(str(exc))})")
        self.server.endpoint.respond(txn, response)

    async def _reoffer_after_lookup(
        self, request: SipRequest, txn: ServerTransaction, negotiated: Negotiated
    ) -> None:
        try:
            resolved = await self._with_address(negotiated)
        except ResolveError as exc:
            self._refuse_reoffer(request, txn, exc)
            return
        if self.rtp is not None and not self.rtp.ended:
            self._apply_reoffer(request, txn, resolved)
        else:  # the call ended while the name was looked up
            self.server.endpoint.respond(txn, make_response(request, 481))

    def _apply_reoffer(
        self, request: SipRequest, txn: ServerTransaction, negotiated: Negotiated
    ) -> None:
        rtp = self.rtp
        assert rtp is not None
        self._sdp_version += 1
        self.negotiated = negotiated
        self._local_sdp = negotiated.answer
        rtp.configure(
            codec=negotiated.codec,
            payload_type=negotiated.payload_type,
            telephone_event_pt=negotiated.telephone_event_payload_type,
            remote=negotiated.remote_rtp,
        )
        rtp.set_direction(send=negotiated.can_send, receive=negotiated.can_receive)
        self.log.info(
            "reoffer_accepted",
            method=request.method,
            codec=negotiated.codec,
            hold=negotiated.on_hold,
        )
        self._answer_reoffer(request, txn, negotiated.answer.to_bytes())

    def _answer_reoffer(self, request: SipRequest, txn: ServerTransaction, body: bytes) -> None:
        headers = Headers([("Contact", f"<{self.local_contact}>"), ("Allow", ALLOW)])
        response = make_response(
            request, 200, headers=headers, body=body, content_type="application/sdp"
        )
        self.server.endpoint.respond(txn, response)

    def _on_info(self, request: SipRequest, txn: ServerTransaction) -> None:
        """SIP INFO DTMF (application/dtmf-relay), still common on older gateways."""
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type in INFO_DTMF_TYPES and self.leg is not None:
            digit, duration = parse_info_dtmf(request.body)
            if digit is not None:
                self.leg.dtmf(digit, duration)
        self.server.endpoint.respond(txn, make_response(request, 200))

    # ------------------------------------------------------------------ signalling out

    async def _hang_up(self, reason: str) -> None:
        """Send BYE once (the agent ended the call, or media died) and wait for its answer."""
        self.end_reason = self.end_reason or reason
        if self._bye_sent or self._bye_received or not self.answered:
            return
        self._bye_sent = True
        host, port = self.server.endpoint.via_address(self.dialog.transport)
        headers = Headers([("Reason", f'SIP;cause=200;text="{reason}"')])
        bye = self.dialog.create_request("BYE", host, port, extra=headers)
        self.log.info("bye_sent", reason=reason)
        future = self.server.endpoint.send_request(bye, self.server.peer_for(self.dialog))
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(future, BYE_TIMEOUT_S)

    def _spawn_bye(self, reason: str) -> None:
        self.server.spawn(self._hang_up(reason))

    async def _transfer(self, target: str) -> bool:
        """Blind transfer with REFER (RFC 3515); True when the far end accepted it."""
        if not self.answered:
            return False
        host, port = self.server.endpoint.via_address(self.dialog.transport)
        refer_to = target if target.startswith(("sip:", "sips:", "tel:")) else f"tel:{target}"
        headers = Headers(
            [
                ("Refer-To", f"<{refer_to}>"),
                ("Referred-By", f"<{self.dialog.local_uri}>"),
            ]
        )
        refer = self.dialog.create_request("REFER", host, port, extra=headers)
        future = self.server.endpoint.send_request(refer, self.server.peer_for(self.dialog))
        try:
            response = await asyncio.wait_for(future, 10.0)
        except TimeoutError:
            return False
        self.log.info("refer_answered", status=response.status)
        return 200 <= response.status < 300

    # ------------------------------------------------------------------ teardown

    async def _cleanup(self) -> None:
        if self.answered and not self._bye_received and not self._bye_sent:
            with contextlib.suppress(Exception):
                await self._hang_up(self.end_reason or "ended")
        if self.leg is not None:
            with contextlib.suppress(Exception):
                await self.leg.close()
        elif self.rtp is not None:
            with contextlib.suppress(Exception):
                await self.rtp.hangup("closed")
        self.ended = True
        self.admission.release(self.end_reason or "ended")
        self.log.info("call_finished", reason=self.end_reason, answered=self.answered)


def _rate(codec: str) -> int:
    return {"PCMU": 8000, "PCMA": 8000, "G722": 16000, "opus": 48000}.get(codec, 0)


def _phrase(text: str) -> str:
    """A reason phrase must be one short line."""
    return " ".join(text.split())[:80]


def _user_of(value: str | None) -> str:
    if not value:
        return ""
    try:
        return NameAddr.parse(value).uri
    except ValueError:
        return ""
