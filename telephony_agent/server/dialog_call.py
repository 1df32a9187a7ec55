"""What every established SIP call does, whichever side placed it: in-dialog requests,
BYE, transfer, teardown.

Why a base class: a call we answered (`InboundCall`) and a call we placed
(`OutboundCall`) differ only until the dialog is confirmed. From then on both take
re-INVITEs and UPDATEs (hold, new address, session refresh), SIP INFO digits and
NOTIFYs, end with a BYE from either side, and hand the caller on with REFER — so that
behaviour lives here once, and each subclass only sets the call up.
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

from telephony_agent.audio.clock import MediaClock
from telephony_agent.call.bridge import Call
from telephony_agent.call.record import CallRecord, TranscriptLine
from telephony_agent.config import Settings
from telephony_agent.media.leg import TransferResult
from telephony_agent.media.relay import relay
from telephony_agent.media.rtp import RtpLeg
from telephony_agent.media.rtp.srtp import SrtpContext
from telephony_agent.realtime.client import RealtimeSession
from telephony_agent.server.info_dtmf import INFO_DTMF_TYPES, parse_info_dtmf
from telephony_agent.server.sip_leg import SipCallLeg
from telephony_agent.sip.dialog import Dialog, DialogError, make_response
from telephony_agent.sip.endpoint import SipEndpoint
from telephony_agent.sip.message import Headers, NameAddr, SipParseError, SipRequest, SipUri
from telephony_agent.sip.refer import TransferOutcome, TransferProgress
from telephony_agent.sip.resolver import ResolveError, is_ip_literal
from telephony_agent.sip.sdes import CryptoLine
from telephony_agent.sip.sdp import (
    Negotiated,
    SdpError,
    SessionDescription,
    parse_sdp,
    with_direction,
)
from telephony_agent.sip.sdp_srtp import SrtpMode, answer_secure
from telephony_agent.sip.transaction import Peer, ServerTransaction
from telephony_agent.switchboard import Admission

__all__ = [
    "ALLOW",
    "SUPPORTED",
    "CallSummary",
    "DialogCall",
    "SipHost",
    "TargetLeg",
    "bridge_uri",
    "reason_phrase",
    "uri_of",
]

log = structlog.get_logger(__name__)

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, NOTIFY"
SUPPORTED = "replaces"
BYE_TIMEOUT_S = 8.0
#: How long a transfer may take to report its outcome (NOTIFY 200 or a failure).
TRANSFER_TIMEOUT_S = 30.0


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

    @property
    def clock(self) -> MediaClock: ...

    async def open_rtp(self) -> RtpLeg: ...

    def track_dialog(self, call: DialogCall) -> None: ...

    def forget_dialog(self, call: DialogCall) -> None: ...

    def dial_target(
        self, admission: Admission, target: SipUri, from_uri: str, transport: str, ring_s: float
    ) -> TargetLeg: ...

    def peer_for(self, dialog: Dialog) -> Peer: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    def reject_method(self, request: SipRequest, transaction: ServerTransaction) -> None: ...


class TargetLeg(Protocol):
    """The target's leg of a bridged transfer (`server/bridge_target.py`)."""

    leg: SipCallLeg | None
    status: int | None
    end_reason: str

    async def connect(self) -> bool: ...

    async def close(self, reason: str) -> None: ...


class DialogCall:
    """The part of a SIP call that follows the dialog's confirmation."""

    server: SipHost
    admission: Admission
    dialog: Dialog
    local_contact: str
    negotiated: Negotiated | None
    leg: SipCallLeg | None
    rtp: RtpLeg | None
    call: Call | None
    answered: bool
    ended: bool
    end_reason: str
    cancelled: asyncio.Event
    gave_up: asyncio.Event
    record: CallRecord | None
    log: Any
    _on_transcript: Callable[[TranscriptLine], None] | None
    _bye_sent: bool
    _bye_received: bool
    _sdp_version: int
    _session_id: int
    _local_sdp: SessionDescription | None
    _transfer_progress: TransferProgress | None
    _transfer_done: asyncio.Event | None
    _bridge: asyncio.Task[None] | None

    def _init_dialog_state(self) -> None:
        self.negotiated = None
        self.leg = None
        self.rtp = None
        self.call = None
        self.answered = False
        self.ended = False
        self.end_reason = ""
        self.cancelled = asyncio.Event()
        #: Set when the call ends before its ACK came (BYE, or the ACK timed out).
        self.gave_up = asyncio.Event()
        self.record = None
        self._bye_sent = False
        self._bye_received = False
        self._sdp_version = 1
        self._local_sdp = None
        self._transfer_progress = None
        self._transfer_done = None
        self._bridge = None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.dialog.key

    def _srtp_mode(self) -> SrtpMode:
        """`[rtp] srtp`, raised to "required" for a call reached through a sips: URI."""
        mode: SrtpMode = self.server.settings.rtp.srtp
        return "required" if self.dialog.secure else mode

    def _use_keys(self, rtp: RtpLeg, keys: tuple[CryptoLine, CryptoLine] | None) -> None:
        """SRTP with (our key, their key) from now on, or plain RTP."""
        rtp.use_srtp(SrtpContext(ours=keys[0], theirs=keys[1]) if keys else None)
        if keys:
            self.log.info("srtp_on", suite=keys[0].suite)

    async def _run_agent(self, session: RealtimeSession) -> None:
        """The agent's part, once media is agreed: the Call, to its end."""
        if self.leg is None:
            return
        self.record = await self.admission.run(
            self.leg, session, on_transcript=self._on_transcript, on_call=self._set_call
        )
        self.end_reason = self.end_reason or self.record.end_reason

    def _set_call(self, call: Call) -> None:
        self.call = call

    def on_ack(self, request: SipRequest) -> None:
        """An ACK in this dialog; only the answering side expects one."""
        del request

    def _start_media(self, rtp: RtpLeg, n: Negotiated) -> None:
        rtp.configure(
            codec=n.codec,
            payload_type=n.payload_type,
            telephone_event_pt=n.telephone_event_payload_type,
            remote=n.remote_rtp,
        )
        rtp.set_direction(send=n.can_send, receive=n.can_receive)
        self.leg = SipCallLeg(rtp, hangup=self._hang_up, transfer=self._transfer)

    def _mark_answered(self, n: Negotiated) -> None:
        self.answered = True
        self.server.stats.answered += 1
        self.log.info("call_answered", codec=n.codec)

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
        elif method == "NOTIFY" and self._transfer_progress is not None:
            self._on_transfer_notify(request, txn)
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
            secure = answer_secure(
                offer,
                self._srtp_mode(),
                local_address=self.server.media_address,
                local_port=rtp.local_port,
                codec_preference=preference,
                session_id=self._session_id,
                session_version=self._sdp_version + 1,
            )
            negotiated = secure.negotiated
            self._use_keys(rtp, secure.keys)
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
        reason = f"Not Acceptable Here ({reason_phrase(str(exc))})"
        self.server.endpoint.respond(txn, make_response(request, 488, reason))

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

    def _answer_reoffer(self, request: SipRequest, txn: ServerTransaction, body: bytes) -> None:
        headers = Headers([("Contact", f"<{self.local_contact}>"), ("Allow", ALLOW)])
        response = make_response(
            request, 200, headers=headers, body=body, content_type="application/sdp"
        )
        self.server.endpoint.respond(txn, response)

    def _on_transfer_notify(self, request: SipRequest, txn: ServerTransaction) -> None:
        """A NOTIFY about our REFER (Event: refer): feed its sipfrag to the progress."""
        self.server.endpoint.respond(txn, make_response(request, 200))
        progress, done = self._transfer_progress, self._transfer_done
        event = (request.headers.get("Event") or "").split(";")[0].strip().lower()
        if progress is None or done is None or event != "refer":
            return
        outcome = progress.notify(request.body, request.headers.get("Subscription-State"))
        if outcome.done:
            done.set()

    def _on_info(self, request: SipRequest, txn: ServerTransaction) -> None:
        """SIP INFO DTMF (application/dtmf-relay), still common on older gateways."""
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type in INFO_DTMF_TYPES and self.leg is not None:
            digit, duration = parse_info_dtmf(request.body)
            if digit is not None:
                self.leg.dtmf(digit, duration)
        self.server.endpoint.respond(txn, make_response(request, 200))

    async def _hang_up(self, reason: str) -> None:
        """Send BYE once (the agent ended the call, or media died) and wait for its answer.

        After a bridged transfer the agent's leaving is not the end: the caller talks to
        the target until either hangs up, and only then is the caller's BYE sent.
        """
        bridge = self._bridge
        if bridge is not None:
            await asyncio.wait([bridge])
            self._bridge = None
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

    async def _transfer(self, target: str) -> TransferResult:
        """Hand the caller on as the profile says: REFER, and where the caller's side
        refuses it (or never answers it) the profile's fallback, or a bridge at once."""
        if not self.answered:
            return TransferResult(False, "not_answered")
        how = self.admission.profile.transfer
        # The model waits for this tool's result at most `tool_timeout_s`; a bridge
        # must not still ring when the model has been told the transfer timed out.
        deadline = time.monotonic() + self.admission.profile.tool_wait.tool_timeout_s - 1.0
        if how.mode == "bridge":
            return await self._bridge_to(target, deadline)
        outcome = await self._refer(target)
        result = TransferResult(outcome.succeeded, outcome.reason, outcome.status)
        if not outcome.refused or how.fallback == "none":
            return result
        self.log.info("transfer_fallback", fallback=how.fallback, status=outcome.status)
        if how.fallback == "bridge":
            return await self._bridge_to(target, deadline)
        return dataclasses.replace(result, message=how.message)

    async def _bridge_to(self, target: str, deadline: float) -> TransferResult:
        """Call the target ourselves; once it answers the agent leaves and the relay
        connects the two legs (`_run_bridge`). While it rings the Call goes on, so the
        caller hears the agent or the profile's hold audio."""
        uri = bridge_uri(target, self.dialog.remote_target)
        if uri is None or self.leg is None:
            return TransferResult(False, "not_found", mode="bridge")
        transport = uri.params.get("transport") or ("TLS" if uri.scheme == "sips" else "UDP")
        left_s = deadline - time.monotonic()
        ring_s = max(1.0, min(self.server.settings.sip.ring_timeout_s, TRANSFER_TIMEOUT_S, left_s))
        far = self.server.dial_target(
            self.admission, uri, self.dialog.local_uri, transport.upper(), ring_s
        )
        self.log.info("bridge_dialling", target=str(uri)[:120])
        try:
            connected = await far.connect()
        except BaseException:  # the call ended while the target rang
            self.server.spawn(far.close("transfer_abandoned"))
            raise
        if not connected:
            await far.close(far.end_reason or "failed")
            return TransferResult(False, far.end_reason or "no_answer", far.status, mode="bridge")
        self._bridge = self.server.spawn(self._run_bridge(far, str(uri)))
        return TransferResult(True, "transferred", far.status, mode="bridge")

    async def _run_bridge(self, far: TargetLeg, target: str) -> None:
        """Relay caller ⇄ target until either hangs up; the record gets how long."""
        leg = self.leg
        assert leg is not None and far.leg is not None
        ended_by, duration_s = "caller", 0.0
        try:
            result = await relay(
                leg,
                far.leg,
                self.server.clock,
                a_free=leg.agent_left,
                a_gone=lambda: leg.rtp.ended,
                send_a=leg.rtp.send_frame,
            )
            ended_by = "target" if result.ended_by == "b" else "caller"
            duration_s = result.duration_s
        finally:
            await far.close("bridge_ended")
            self.admission.note(f"[bridged to {target} for {duration_s:.1f} s; {ended_by} hung up]")
            self.log.info("bridge_ended", ended_by=ended_by, duration_s=round(duration_s, 2))

    async def _refer(self, target: str) -> TransferOutcome:
        """Blind transfer with REFER (RFC 3515), followed to its outcome.

        The REFER's 202 only means the far end will try; success is a NOTIFY whose
        sipfrag says 2xx, failure one that says busy, declined, not found... or no
        word within `TRANSFER_TIMEOUT_S`. The outcome carries the reason so the model
        can tell the caller and carry on.
        """
        host, port = self.server.endpoint.via_address(self.dialog.transport)
        refer_to = target if target.startswith(("sip:", "sips:", "tel:")) else f"tel:{target}"
        headers = Headers(
            [
                ("Refer-To", f"<{refer_to}>"),
                ("Referred-By", f"<{self.dialog.local_uri}>"),
            ]
        )
        progress = TransferProgress()
        done = asyncio.Event()
        self._transfer_progress, self._transfer_done = progress, done
        refer = self.dialog.create_request("REFER", host, port, extra=headers)
        future = self.server.endpoint.send_request(refer, self.server.peer_for(self.dialog))
        try:
            response = await asyncio.wait_for(future, 10.0)
            self.log.info("refer_answered", status=response.status)
            outcome = progress.refer_answered(response.status)
            if not outcome.done and not done.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), TRANSFER_TIMEOUT_S)
            outcome = progress.timed_out() if not progress.outcome.done else progress.outcome
        except TimeoutError:
            outcome = progress.refer_unanswered()
        finally:
            self._transfer_progress = self._transfer_done = None
        self.log.info(
            "transfer_outcome", ok=outcome.succeeded, status=outcome.status, reason=outcome.reason
        )
        return outcome

    async def _cleanup(self) -> None:
        await self._release_dialog(self.end_reason or "ended")
        self.admission.release(self.end_reason or "ended")
        self.log.info("call_finished", reason=self.end_reason, answered=self.answered)

    async def _release_dialog(self, reason: str) -> None:
        """BYE unless either side already sent one, then free the media: what every end
        of a dialog does, whoever (the agent's call or a bridge's target) owns it."""
        if self.answered and not self._bye_received and not self._bye_sent:
            with contextlib.suppress(Exception):
                await self._hang_up(reason)
        if self.leg is not None:
            with contextlib.suppress(Exception):
                await self.leg.close()
        elif self.rtp is not None:
            with contextlib.suppress(Exception):
                await self.rtp.hangup("closed")
        self.ended = True


def bridge_uri(target: str, remote_target: str) -> SipUri | None:
    """The URI to INVITE for a bridged transfer: a sip:/sips: URI as it is; a number (or
    tel: URI) at the host of `remote_target` (the caller's Contact: the trunk or PBX the
    call came through, which can route it). None when the target is not dialable."""
    text = target.strip()
    if text.startswith("tel:"):
        text = text[4:].split(";", 1)[0]
    if not text.startswith(("sip:", "sips:")):
        number = "".join(ch for ch in text if ch.isdigit() or ch in "+*#")
        if not number:
            return None
        try:
            host = SipUri.parse(remote_target)
        except (SipParseError, ValueError):
            return None
        port = f":{host.port}" if host.port else ""
        text = f"{'sips' if host.scheme == 'sips' else 'sip'}:{number}@{host.host}{port}"
    try:
        uri = SipUri.parse(text)
    except (SipParseError, ValueError):
        return None
    return uri if uri.host else None


def _rate(codec: str) -> int:
    return {"PCMU": 8000, "PCMA": 8000, "G722": 16000, "opus": 48000}.get(codec, 0)


def reason_phrase(text: str) -> str:
    """A reason phrase must be one short line."""
    return " ".join(text.split())[:80]


def uri_of(value: str | None) -> str:
    if not value:
        return ""
    try:
        return NameAddr.parse(value).uri
    except ValueError:
        return ""
