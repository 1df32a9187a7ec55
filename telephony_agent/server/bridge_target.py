"""The target's leg of a bridged transfer: a call we place with no agent on it.

Why an `OutboundCall` without its session: where the caller's side refuses REFER, the
agent calls the target itself and, once it answers, relays the audio between the two
legs. Reaching the target is exactly placing a call — offer, digest challenge, ringing,
ring timeout with CANCEL, busy/declined/not found as distinct reasons — so that is
reused; only the Realtime session and the switchboard slot are left out (the bridged
call keeps the caller's slot), and the end is the bridge's, not the agent's.
"""

from __future__ import annotations

import contextlib
import uuid

import structlog

from telephony_agent.media.rtp import PortsExhausted
from telephony_agent.server.dialog_call import SipHost
from telephony_agent.server.outbound_call import OutboundCall, Route
from telephony_agent.sip.dialog import Dialog
from telephony_agent.sip.message import SipUri
from telephony_agent.sip.refer import reason_for_status
from telephony_agent.sip.sdp import SdpError, parse_sdp
from telephony_agent.sip.sdp_srtp import accept_secure
from telephony_agent.switchboard import Admission

__all__ = ["BridgeTarget"]

log = structlog.get_logger(__name__)


class BridgeTarget(OutboundCall):
    """INVITE to the transfer target; `connect` to its answer, `close` to its end."""

    def __init__(
        self,
        server: SipHost,
        admission: Admission,
        target: SipUri,
        from_uri: str,
        transport: str,
        ring_timeout_s: float,
    ) -> None:
        super().__init__(
            server,
            admission,
            target,
            Route(from_uri=from_uri, transport=transport),
            ring_timeout_s=ring_timeout_s,
            on_dialog=lambda call: server.track_dialog(call),
        )
        # Its own Call-ID: a new dialog, which the caller's Call-ID must not be confused with.
        self.call_id = f"{uuid.uuid4().hex}@{server.media_address}"
        self.log = log.bind(call_id=admission.request.external_id[:128], leg="transfer_target")

    async def connect(self) -> bool:
        """Place the call; True once answered with usable media, else False with
        `end_reason` ("busy", "declined", "no_answer", ...) and `status` set."""
        try:
            rtp = await self.server.open_rtp()
        except PortsExhausted:
            self.end_reason = "no_media_ports"
            return False
        self.rtp = rtp
        peer = await self._resolve()
        if peer is None:
            self.end_reason = "not_found"
            return False
        self._peer = peer
        offer, our_key = self._offer(rtp)
        response = await self._invite_until_final(offer.to_bytes(), peer)
        if response is None or not 200 <= response.status < 300:
            self.status = response.status if response is not None else None
            self.end_reason = self.end_reason or (
                reason_for_status(response.status) if response is not None else "no_answer"
            )
            self.log.info("transfer_target_not_answered", status=self.status, why=self.end_reason)
            return False
        invite = self._invite
        assert invite is not None
        self.status = response.status
        self._confirm(Dialog.for_uac(invite, response, peer.transport))
        self._send_ack(response)
        self.server.track_dialog(self)
        self.answered = True  # from here on, close() sends BYE
        try:
            secure = accept_secure(offer, parse_sdp(response.body), our_key)
        except SdpError as exc:
            self.log.warning("transfer_target_answer_unusable", why=str(exc)[:80])
            self.end_reason = "sdp_rejected"
            return False
        self._use_keys(rtp, secure.keys)
        self.negotiated = secure.negotiated
        self._local_sdp = offer
        self._start_media(rtp, secure.negotiated)
        self.log.info("transfer_target_answered", codec=secure.negotiated.codec)
        return True

    async def close(self, reason: str) -> None:
        """BYE unless the target already hung up (CANCEL if it still rings), free the
        media, forget the dialog."""
        invite, peer = self._invite, self._peer
        if not self.answered and not self.end_reason and invite is not None and peer is not None:
            self.log.info("transfer_target_cancelled", why=reason)
            with contextlib.suppress(Exception):
                await self._send_cancel(invite, peer)
        await self._release_dialog(reason)
        if self.answered:
            self.server.forget_dialog(self)
