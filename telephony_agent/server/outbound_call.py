"""One call the agent places: INVITE, ringing, answer or a distinct failure, then the call.

Why the order: the RTP socket and the SDP offer exist before the INVITE leaves, and
the Realtime session connects while the far end rings, so the callee's first word
reaches the model. Nothing is heard before the answer: early media in a 183 goes to
nobody (the leg is configured only from the 2xx's SDP). A digest challenge (401/407)
is answered once with the registration's credentials; a ring that lasts past
`ring_timeout_s` is CANCELled. Every way a call can fail to connect — busy,
declined, not found, unavailable, no answer, refused authentication — is its own
end reason in the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from telephony_agent.call.record import TranscriptLine
from telephony_agent.logs import bind_call
from telephony_agent.media.rtp import PortsExhausted, RtpLeg
from telephony_agent.realtime.client import RealtimeSession
from telephony_agent.server.dialog_call import ALLOW, CallSummary, DialogCall, SipHost
from telephony_agent.sip.dialog import Dialog, new_tag
from telephony_agent.sip.digest import (
    Challenge,
    DigestClient,
    DigestCredentials,
    DigestError,
    choose_challenge,
)
from telephony_agent.sip.message import Headers, NameAddr, SipRequest, SipResponse, SipUri, Via
from telephony_agent.sip.refer import reason_for_status
from telephony_agent.sip.sdes import CryptoLine
from telephony_agent.sip.sdp import SdpError, SessionDescription, build_offer, parse_sdp
from telephony_agent.sip.sdp_srtp import accept_secure, offer_secure
from telephony_agent.sip.transaction import Peer, new_branch
from telephony_agent.switchboard import Admission

__all__ = ["OutboundCall", "Route"]

log = structlog.get_logger(__name__)

#: How long the far end may take to send a final answer to our CANCEL.
_CANCEL_WAIT_S = 5.0
_RESOLVE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Route:
    """How to reach the callee: who we say we are, with which credentials, through where."""

    from_uri: str
    credentials: DigestCredentials | None = field(default=None, repr=False)
    outbound_proxy: str | None = None
    transport: str = "UDP"
    #: Where the INVITE is sent when there is no outbound proxy (a trunk's registrar);
    #: None: the callee's own host.
    first_hop: str | None = None


class OutboundCall(DialogCall):
    """The UAC side of one call: INVITE to BYE."""

    def __init__(
        self,
        server: SipHost,
        admission: Admission,
        target: SipUri,
        route: Route,
        *,
        ring_timeout_s: float,
        on_dialog: Callable[[OutboundCall], None],
        on_transcript: Callable[[TranscriptLine], None] | None = None,
    ) -> None:
        self.server = server
        self.admission = admission
        self.target = target
        self.route = route
        self.ring_timeout_s = ring_timeout_s
        self.call_id = admission.request.external_id
        self.short_id = self.call_id[:128]
        self.log = log.bind(call_id=self.short_id)
        self._on_dialog = on_dialog
        self._on_transcript = on_transcript
        self._init_dialog_state()
        self._session_id = int(time.time())
        self._from_tag = new_tag()
        self._cseq = 0
        self.status: int | None = None
        self.setup_ms = 0.0
        self._invite: SipRequest | None = None
        self._peer: Peer | None = None
        self._ringing = asyncio.Event()
        #: Set by the 2xx; until then there is no dialog to send in.
        self._dialog: Dialog | None = None
        transport = route.transport
        host, port = server.endpoint.via_address(transport)
        self._via = (host, port)
        user = SipUri.parse(route.from_uri).user or "agent"
        self.local_contact = f"sip:{user}@{host}:{port}"
        if transport != "UDP":
            self.local_contact += f";transport={transport.lower()}"

    # ------------------------------------------------------------------ running

    async def run(self) -> CallSummary:
        """Place the call, run it, tear it down. Never raises."""
        bind_call(self.short_id)
        try:
            await self._run()
        except Exception as exc:  # a bug must end this call, not the server
            self.log.warning("outbound_call_failed", error=type(exc).__name__)
            self.end_reason = self.end_reason or "internal_error"
        finally:
            await self._cleanup()
        codec = self.negotiated.codec if self.negotiated else ""
        return CallSummary(self.call_id, codec, self.answered, self.end_reason, self.record)

    async def _run(self) -> None:
        try:
            rtp = await self.server.open_rtp()
        except PortsExhausted:
            self.end_reason = "no_media_ports"
            return
        self.rtp = rtp
        peer = await self._resolve()
        if peer is None:
            self.end_reason = "not_found"
            return
        self._peer = peer
        offer, our_key = self._offer(rtp)
        session = self.admission.new_session()
        connect = asyncio.ensure_future(session.connect())
        started = time.monotonic()
        try:
            response = await self._invite_until_final(offer.to_bytes(), peer)
        except BaseException:
            connect.cancel()
            await _close(session)
            raise
        self.setup_ms = (time.monotonic() - started) * 1000.0
        if response is None or not 200 <= response.status < 300:
            connect.cancel()
            with contextlib.suppress(BaseException):
                await connect
            await _close(session)
            self.status = response.status if response is not None else None
            self.end_reason = self.end_reason or (
                reason_for_status(response.status) if response is not None else "no_answer"
            )
            self.log.info("outbound_not_answered", status=self.status, reason=self.end_reason)
            return
        invite = self._invite
        assert invite is not None
        self._confirm(Dialog.for_uac(invite, response, peer.transport))
        self._send_ack(response)
        self._on_dialog(self)
        try:
            secure = accept_secure(offer, parse_sdp(response.body), our_key)
        except SdpError as exc:
            self.log.warning("outbound_answer_unusable", why=str(exc)[:80])
            self.answered = True  # so that cleanup sends BYE
            self.end_reason = "sdp_rejected"
            await _close(session)
            return
        negotiated = secure.negotiated
        self._use_keys(rtp, secure.keys)
        self.negotiated = negotiated
        self._local_sdp = offer
        self._start_media(rtp, negotiated)
        self._mark_answered(negotiated)
        try:
            await asyncio.wait_for(connect, self.server.settings.sip.answer_timeout_s)
        except Exception:
            self.log.warning("realtime_unavailable", why="connect failed after answer")
            self.end_reason = "realtime_unavailable"
            await _close(session)
            return
        await self._run_agent(session)

    def _offer(self, rtp: RtpLeg) -> tuple[SessionDescription, CryptoLine | None]:
        """Our SDP offer for `rtp`'s port, with an SRTP key where SRTP is required."""
        offer = build_offer(
            local_address=self.server.media_address,
            local_port=rtp.local_port,
            codecs=self.server.codecs,
            session_id=self._session_id,
            session_version=self._sdp_version,
        )
        mode = "required" if self.target.scheme == "sips" else self.server.settings.rtp.srtp
        return offer_secure(offer, "required" if mode == "required" else "off")

    # ------------------------------------------------------------------ INVITE

    async def _invite_until_final(self, sdp: bytes, peer: Peer) -> SipResponse | None:
        """INVITE, answer one challenge, CANCEL at the ring timeout; the final response."""
        digest: DigestClient | None = None
        deadline = asyncio.get_running_loop().time() + self.ring_timeout_s
        for _attempt in range(3):
            invite = self._build_invite(sdp, digest)
            self._invite = invite
            future = self.server.endpoint.send_request(
                invite,
                peer,
                on_provisional=self._on_provisional,
                on_2xx_retransmit=self._send_ack,
            )
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                response = await asyncio.wait_for(asyncio.shield(future), max(0.1, remaining))
            except TimeoutError:
                return await self._cancel(invite, peer, future)
            if response.status in (401, 407) and self.route.credentials is not None:
                challenge = self._challenge(response)
                if challenge is None:
                    self.end_reason = "auth_failed"
                    return response
                if digest is None:
                    digest = DigestClient(self.route.credentials)
                elif challenge.nonce == (digest.challenge.nonce if digest.challenge else None):
                    self.end_reason = "auth_failed"
                    return response
                digest.accept(challenge)
                continue
            if response.status in (401, 407):
                self.end_reason = "auth_required"
            return response
        self.end_reason = "auth_failed"
        return None

    def _challenge(self, response: SipResponse) -> Challenge | None:
        proxy = response.status == 407
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        try:
            return choose_challenge(response.headers.get_all(name), proxy=proxy)
        except DigestError as exc:
            self.log.warning("outbound_challenge_unusable", why=str(exc))
            return None

    def _build_invite(self, sdp: bytes, digest: DigestClient | None) -> SipRequest:
        self._cseq += 1
        host, port = self._via
        transport = self.route.transport
        headers = Headers()
        via = Via(transport, host, port, {"branch": new_branch(), "rport": None})
        headers.add("Via", str(via))
        headers.add("Max-Forwards", "70")
        if self.route.outbound_proxy:
            headers.add("Route", f"<{self.route.outbound_proxy};lr>")
        headers.add("From", str(NameAddr(self.route.from_uri, None, {"tag": self._from_tag})))
        headers.add("To", f"<{self.target}>")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self._cseq} INVITE")
        headers.add("Contact", f"<{self.local_contact}>")
        headers.add("Allow", ALLOW)
        headers.add("Content-Type", "application/sdp")
        uri = str(self.target)
        if digest is not None:
            answer = digest.authorization("INVITE", uri)
            if answer is not None:
                headers.add(*answer)
        return SipRequest("INVITE", uri, headers, sdp)

    def _confirm(self, dialog: Dialog) -> None:
        self.dialog = dialog
        self._dialog = dialog

    def _on_provisional(self, response: SipResponse) -> None:
        """180/183: ringing. Early media is not played to anyone and not sent to the model."""
        if response.status in (180, 183) and not self._ringing.is_set():
            self._ringing.set()
            self.log.info("outbound_ringing", status=response.status)

    async def _cancel(
        self, invite: SipRequest, peer: Peer, future: asyncio.Future[SipResponse]
    ) -> SipResponse | None:
        """§9.1: CANCEL the ringing INVITE; the call ends as unanswered either way."""
        self.end_reason = "no_answer"
        self.log.info("outbound_cancelled", after_s=self.ring_timeout_s)
        await self._send_cancel(invite, peer)
        try:
            final = await asyncio.wait_for(future, _CANCEL_WAIT_S)
        except TimeoutError:
            return None
        if 200 <= final.status < 300:
            # The callee answered as we cancelled: the call is ours; hang it up at once.
            self._confirm(Dialog.for_uac(invite, final, peer.transport))
            self._send_ack(final)
            self.answered = True
            return None
        return final

    async def _send_cancel(self, invite: SipRequest, peer: Peer) -> None:
        """CANCEL `invite` (§9.1: same Via branch, Route, From, To and Call-ID)."""
        headers = Headers()
        headers.add("Via", invite.headers.get_all("Via")[0])
        for name in ("Route", "From", "To", "Call-ID"):
            for value in invite.headers.get_all(name):
                headers.add(name, value)
        headers.add("Max-Forwards", "70")
        headers.add("CSeq", f"{invite.cseq[0]} CANCEL")
        cancel = SipRequest("CANCEL", invite.uri, headers)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.server.endpoint.send_request(cancel, peer), _CANCEL_WAIT_S)

    def _send_ack(self, response: SipResponse) -> None:
        """ACK a 2xx (again, for each retransmission of it) along the route set."""
        invite = self._invite
        if invite is None or not 200 <= response.status < 300:
            return
        dialog = self._dialog or Dialog.for_uac(invite, response, self.route.transport)
        host, port = self._via
        ack = dialog.create_request("ACK", host, port, cseq=invite.cseq[0])
        self.server.endpoint.send_stateless(ack, self.server.peer_for(dialog))

    async def _resolve(self) -> Peer | None:
        """The first hop: the outbound proxy, or the callee's host (A records only)."""
        route = self.route
        first_hop = SipUri.parse(route.outbound_proxy or route.first_hop or str(self.target))
        transport = (first_hop.params.get("transport") or self.route.transport).upper()
        port = first_hop.port or (5061 if transport == "TLS" else 5060)
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(first_hop.host, port, family=socket.AF_INET),
                _RESOLVE_TIMEOUT_S,
            )
        except (OSError, TimeoutError) as exc:
            self.log.warning("outbound_unresolved", host=first_hop.host, error=str(exc)[:80])
            return None
        address = str(infos[0][4][0])
        if transport == "TLS":
            self.server.endpoint.expect_tls_name(address, port, first_hop.host)
        return Peer(transport, address, port)


async def _close(session: RealtimeSession) -> None:
    with contextlib.suppress(Exception):
        await session.close()
