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
import time
from collections.abc import Callable

import structlog

from telephony_agent.call.record import TranscriptLine
from telephony_agent.logs import bind_call
from telephony_agent.media.rtp import PortsExhausted, RtpLeg
from telephony_agent.realtime.client import RealtimeSession
from telephony_agent.server.dialog_call import (
    ALLOW,
    SUPPORTED,
    CallSummary,
    DialogCall,
    SipHost,
    reason_phrase,
    uri_of,
)
from telephony_agent.server.pending_session import PendingSession, close_quietly
from telephony_agent.sip.dialog import Dialog, make_response, new_tag
from telephony_agent.sip.message import Headers, SipRequest
from telephony_agent.sip.resolver import ResolveError
from telephony_agent.sip.sdp import (
    Negotiated,
    SdpError,
    accept_answer,
    build_offer,
    parse_sdp,
)
from telephony_agent.sip.sdp_srtp import answer_secure
from telephony_agent.sip.transaction import Peer, ServerTransaction
from telephony_agent.switchboard import Admission

__all__ = ["InboundCall"]

log = structlog.get_logger(__name__)


class InboundCall(DialogCall):
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
        self.log = log.bind(call_id=admission.id, sip_call_id=self.short_id)
        host, port = server.endpoint.via_address(source.transport)
        self.local_contact = f"sip:agent@{host}:{port}"
        if source.transport in ("TCP", "TLS"):
            self.local_contact += f";transport={source.transport.lower()}"
        self.dialog = Dialog.for_uas(invite, self.local_tag, self.local_contact, source.transport)
        self._init_dialog_state()
        self.acked = asyncio.Event()
        self.pending = PendingSession(
            lambda: self.admission.new_session(self.leg.format if self.leg else None),
            t1_s=server.endpoint.layer.timers.t1,
            log=self.log,
            on_closed_unacked=self._count_closed_session,
        )
        #: When our 200 OK first went out (for the ACK's delay in the log).
        self._ok_sent_at: float | None = None
        self._session_id = int(time.time())
        self._on_transcript = on_transcript
        self._ack: SipRequest | None = None

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
        if status == 200 and self._ok_sent_at is None:
            self._ok_sent_at = time.monotonic()
        self.server.endpoint.respond(self.transaction, response)

    async def run(self) -> CallSummary:
        """Set the call up, run it, tear it down. Never raises."""
        bind_call(self.admission.id, sip_call_id=self.short_id, profile=self.admission.profile.name)
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
        if session is None or self.negotiated is None:
            return
        await self._run_agent(session)

    async def _answer_offer(self, rtp: RtpLeg, timeout_s: float) -> RealtimeSession | None:
        """The usual case: the INVITE carries the offer, our 200 the answer."""
        try:
            secure = answer_secure(
                parse_sdp(self.invite.body),
                self._srtp_mode(),
                local_address=self.server.media_address,
                local_port=rtp.local_port,
                codec_preference=self.server.codecs,
                session_id=self._session_id,
                session_version=self._sdp_version,
            )
            self._use_keys(rtp, secure.keys)
            n = await self._with_address(secure.negotiated)
        except (SdpError, ResolveError) as exc:
            self._respond(488, f"Not Acceptable Here ({reason_phrase(str(exc))})")
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
            self.log.warning("late_answer_unusable", why=reason_phrase(str(exc)))
            self.end_reason = "no_answer_in_ack"
            await close_quietly(session)
            return None
        self.negotiated = negotiated
        self._start_media(rtp, negotiated)
        self._mark_answered(negotiated)
        return session

    def _log_ringing(self, n: Negotiated) -> None:
        self.log.info(
            "call_ringing",
            caller=uri_of(self.invite.headers.get("From")),
            codec=n.codec,
            remote=f"{n.remote_rtp[0]}:{n.remote_rtp[1]}" if n.remote_rtp else "unknown",
        )

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

    def _count_closed_session(self) -> None:
        self.server.stats.sessions_closed_unacked += 1

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
