"""The softphone's one call: INVITE with an offer, speak a file over RTP, record, BYE.

Why it shares the server's parts (SIP endpoint, dialogs, SDP, RTP leg, media
clock): a test caller built from different code would only prove that two
implementations agree with each other. Real-peer tests (SIPp, baresip) cover the
other direction; this one exists so a deployment can be checked in one command.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr
import structlog
from numpy.typing import NDArray

from telephony_agent.audio.clock import MediaClock, Subscription
from telephony_agent.audio.playout import Frame
from telephony_agent.caller.turns import TurnMeter
from telephony_agent.media.leg import AudioIn, DtmfIn, LegEnded
from telephony_agent.media.rtp import PortAllocator, RtpLeg
from telephony_agent.media.rtp.srtp import SrtpContext
from telephony_agent.sip.dialog import Dialog, new_tag, peer_for_uri
from telephony_agent.sip.endpoint import SipEndpoint
from telephony_agent.sip.message import Headers, NameAddr, SipRequest, SipResponse, SipUri, Via
from telephony_agent.sip.sdp import Negotiated, SdpError, build_offer, parse_sdp
from telephony_agent.sip.sdp_srtp import accept_secure, offer_secure
from telephony_agent.sip.tls import client_context
from telephony_agent.sip.transaction import Peer, ServerTransaction, Timers, new_branch

__all__ = ["CallOptions", "CallResult", "place_call"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CallOptions:
    """What the softphone does on its call."""

    uri: str
    audio: NDArray[np.int16]
    audio_rate: int
    codecs: tuple[str, ...] = ("PCMU", "PCMA", "G722", "opus")
    duration_s: float | None = None
    #: Seconds to keep listening after the file has been spoken (without --duration).
    tail_s: float = 4.0
    dtmf: str = ""
    dtmf_at_s: float = 1.0
    transport: str = "UDP"
    #: CA certificates to verify the agent's TLS certificate with (system store if None).
    tls_ca_file: Path | None = None
    bind_host: str = "127.0.0.1"
    answer_timeout_s: float = 30.0
    from_user: str = "caller"
    t1_s: float = 0.5
    #: Offer SRTP (RTP/SAVP with an SDES key) and accept nothing less.
    srtp: bool = False
    #: The status this softphone reports for a transfer asked of it (REFER → NOTIFY).
    transfer_status: int = 200


@dataclass
class CallResult:
    answered: bool
    status: int
    reason: str
    codec: str = ""
    seconds: float = 0.0
    recording: NDArray[np.int16] = field(default_factory=lambda: np.zeros(0, np.int16))
    recording_rate: int = 8000
    turn_latencies_ms: list[float] = field(default_factory=list)
    ended_by: str = ""
    setup_ms: float = 0.0
    transferred_to: str | None = None
    srtp: bool = False

    def summary(self) -> str:
        if not self.answered:
            return f"not answered: {self.status} {self.reason}"
        turns = ", ".join(f"{ms:.0f}" for ms in self.turn_latencies_ms) or "none"
        transfer = f", transferred to {self.transferred_to}" if self.transferred_to else ""
        secure = " over SRTP" if self.srtp else ""
        return (
            f"answered: codec {self.codec}{secure}, {self.seconds:.1f} s, "
            f"setup {self.setup_ms:.0f} ms, "
            f"ended by {self.ended_by}{transfer}, turn latencies (ms): {turns}"
        )


class _Handler:
    """Requests the far end sends us inside the call (BYE, re-INVITE, OPTIONS)."""

    def __init__(self, transfer_status: int = 200) -> None:
        self.endpoint: SipEndpoint | None = None
        self.dialog: Dialog | None = None
        #: What this softphone reports for a transfer in its NOTIFY (0: no NOTIFY).
        self.transfer_status = transfer_status
        self._tasks: set[asyncio.Task[None]] = set()
        self.bye = asyncio.Event()
        #: Where the far end asked us to go (REFER's Refer-To), for the summary.
        self.referred_to: str | None = None

    def on_request(
        self, request: SipRequest, transaction: ServerTransaction | None, source: Peer
    ) -> None:
        del source
        endpoint = self.endpoint
        if transaction is None or endpoint is None:
            return
        from telephony_agent.sip.dialog import make_response

        dialog = self.dialog
        if dialog is None or request.call_id != dialog.call_id:
            endpoint.respond(transaction, make_response(request, 481))
            return
        if request.method == "BYE":
            endpoint.respond(transaction, make_response(request, 200))
            self.bye.set()
        elif request.method in ("OPTIONS", "NOTIFY", "INFO"):
            endpoint.respond(transaction, make_response(request, 200))
        elif request.method == "REFER":
            # A softphone for testing accepts the transfer and reports it; it does not
            # place the new call itself.
            self.referred_to = request.headers.get("Refer-To")
            endpoint.respond(transaction, make_response(request, 202))
            if self.transfer_status:
                task = asyncio.ensure_future(self._notify_transfer(endpoint, dialog))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        else:
            endpoint.respond(transaction, make_response(request, 501))

    async def _notify_transfer(self, endpoint: SipEndpoint, dialog: Dialog) -> None:
        """RFC 3515: report "trying", then the outcome, as message/sipfrag NOTIFYs."""
        host, port = endpoint.via_address(dialog.transport)
        hop = peer_for_uri(dialog.next_hop_uri(), dialog.transport)
        final = self.transfer_status
        reason = "OK" if final < 300 else "Busy Here" if final == 486 else "Failed"
        for status, text, state in (
            (100, "Trying", "active;expires=60"),
            (final, reason, "terminated;reason=noresource"),
        ):
            headers = Headers([("Event", "refer"), ("Subscription-State", state)])
            notify = dialog.create_request(
                "NOTIFY",
                host,
                port,
                body=f"SIP/2.0 {status} {text}\r\n".encode(),
                content_type="message/sipfrag;version=2.0",
                extra=headers,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(endpoint.send_request(notify, hop), 5.0)
            await asyncio.sleep(0.05)

    def on_ack_timeout(self, transaction: ServerTransaction) -> None:
        del transaction


async def place_call(options: CallOptions, clock: MediaClock | None = None) -> CallResult:
    """Dial `options.uri`, run the call, and return what happened. Never raises on SIP errors."""
    clock = clock or MediaClock()
    handler = _Handler(options.transfer_status)
    endpoint = SipEndpoint(
        handler, timers=Timers(t1=options.t1_s), user_agent="telephony-agent-call"
    )
    handler.endpoint = endpoint
    target = SipUri.parse(options.uri)
    peer = peer_for_uri(options.uri, options.transport)
    if peer.transport == "TCP":
        # A TCP caller still needs a listener for requests on new connections (rare).
        await endpoint.listen_tcp(options.bind_host, 0)
    if peer.transport == "TLS":
        # Requests from the agent come back over the connection we open.
        endpoint.tls_client_context = client_context(ca_file=options.tls_ca_file)
        endpoint.expect_tls_name(peer.host, peer.port, target.host)
    await endpoint.listen_udp(options.bind_host, 0)
    allocator = PortAllocator(30000, 39999)
    rtp = await RtpLeg.open(allocator=allocator, bind_host=options.bind_host, clock=clock)
    try:
        return await _run(options, endpoint, handler, rtp, clock, target, peer)
    finally:
        with contextlib.suppress(Exception):
            await rtp.hangup("closed")
        await endpoint.close()
        clock.stop()


async def _run(
    options: CallOptions,
    endpoint: SipEndpoint,
    handler: _Handler,
    rtp: RtpLeg,
    clock: MediaClock,
    target: SipUri,
    peer: Peer,
) -> CallResult:
    via_host, via_port = endpoint.via_address(peer.transport)
    session_id = int(time.time())
    offer = build_offer(
        local_address=options.bind_host,
        local_port=rtp.local_port,
        codecs=options.codecs,
        session_id=session_id,
        session_version=1,
    )
    offer, our_key = offer_secure(offer, "required" if options.srtp else "off")
    invite = _invite(options, target, via_host, via_port, peer.transport, offer.to_bytes())
    started = time.monotonic()
    answer_future = endpoint.send_request(invite, peer)
    try:
        response = await asyncio.wait_for(asyncio.shield(answer_future), options.answer_timeout_s)
    except TimeoutError:
        # Give up like a caller putting the phone down: CANCEL, then the INVITE's
        # own final answer (487 Request Terminated, or a 200 that crossed the CANCEL).
        await _cancel(endpoint, invite, peer)
        try:
            response = await asyncio.wait_for(answer_future, 64 * options.t1_s)
        except TimeoutError:
            return CallResult(False, 408, "no answer")
        if 200 <= response.status < 300:
            dialog = Dialog.for_uac(invite, response, peer.transport)
            hop = peer_for_uri(dialog.next_hop_uri(), peer.transport)
            endpoint.send_stateless(dialog.create_ack(invite.cseq[0], via_host, via_port), hop)
            await _bye(endpoint, dialog, hop, via_host, via_port)
        return CallResult(False, response.status, response.reason)
    if not 200 <= response.status < 300:
        return CallResult(False, response.status, response.reason)
    setup_ms = (time.monotonic() - started) * 1000
    dialog = Dialog.for_uac(invite, response, peer.transport)
    handler.dialog = dialog
    ack = dialog.create_ack(invite.cseq[0], via_host, via_port)
    hop = peer_for_uri(dialog.next_hop_uri(), peer.transport)
    endpoint.send_stateless(ack, hop)
    try:
        secure = accept_secure(offer, parse_sdp(response.body), our_key)
        negotiated = secure.negotiated
        if secure.keys is not None:
            rtp.use_srtp(SrtpContext(ours=secure.keys[0], theirs=secure.keys[1]))
    except SdpError as exc:
        await _bye(endpoint, dialog, hop, via_host, via_port)
        return CallResult(False, 488, f"unusable answer: {exc}")
    rtp.configure(
        codec=negotiated.codec,
        payload_type=negotiated.payload_type,
        telephone_event_pt=negotiated.telephone_event_payload_type,
        remote=negotiated.remote_rtp,
    )
    result = await _media(options, rtp, clock, handler, negotiated)
    result.setup_ms = setup_ms
    result.transferred_to = handler.referred_to
    result.srtp = rtp.srtp is not None
    if result.ended_by == "caller":
        await _bye(endpoint, dialog, hop, via_host, via_port)
    endpoint.forget_invite(answer_future)
    return result


def _invite(
    options: CallOptions,
    target: SipUri,
    via_host: str,
    via_port: int,
    transport: str,
    body: bytes,
) -> SipRequest:
    headers = Headers()
    via = Via(transport, via_host, via_port, {"branch": new_branch(), "rport": None})
    headers.add("Via", str(via))
    headers.add("Max-Forwards", "70")
    local_uri = f"sip:{options.from_user}@{via_host}"
    headers.add("From", str(NameAddr(local_uri, None, {"tag": new_tag()})))
    headers.add("To", f"<{target}>")
    headers.add("Call-ID", f"{uuid.uuid4().hex}@{via_host}")
    headers.add("CSeq", "1 INVITE")
    contact = f"sip:{options.from_user}@{via_host}:{via_port}"
    if transport in ("TCP", "TLS"):
        contact += f";transport={transport.lower()}"
    headers.add("Contact", f"<{contact}>")
    headers.add("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY, INFO")
    headers.add("Content-Type", "application/sdp")
    return SipRequest("INVITE", str(target), headers, body)


async def _cancel(endpoint: SipEndpoint, invite: SipRequest, peer: Peer) -> None:
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    headers.add("Max-Forwards", "70")
    for name in ("From", "To", "Call-ID"):
        headers.add(name, invite.headers.get(name) or "")
    headers.add("CSeq", f"{invite.cseq[0]} CANCEL")
    cancel = SipRequest("CANCEL", invite.uri, headers)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(endpoint.send_request(cancel, peer), 5.0)


async def _bye(
    endpoint: SipEndpoint, dialog: Dialog, hop: Peer, via_host: str, via_port: int
) -> None:
    bye = dialog.create_request("BYE", via_host, via_port)
    with contextlib.suppress(TimeoutError):
        response: SipResponse = await asyncio.wait_for(endpoint.send_request(bye, hop), 8.0)
        log.info("bye_answered", status=response.status)


async def _media(
    options: CallOptions,
    rtp: RtpLeg,
    clock: MediaClock,
    handler: _Handler,
    negotiated: Negotiated,
) -> CallResult:
    """Speak the file one frame per tick, record every frame heard, measure turns."""
    rate = rtp.sample_rate
    frame_samples = rate // 50
    audio = options.audio
    if options.audio_rate != rate:
        # One-shot C resampling: milliseconds for a whole file, so the shared loop
        # (which may also run a server, as in the demo) is never held up.
        audio = soxr.resample(audio, options.audio_rate, rate, quality="HQ").astype(np.int16)
    total_s = options.duration_s
    if total_s is None:
        total_s = audio.size / rate + options.tail_s
    total_frames = max(1, int(total_s * 50))
    padded = np.zeros(total_frames * frame_samples, dtype=np.int16)
    usable = min(audio.size, padded.size)
    padded[:usable] = audio[:usable]
    frames = padded.reshape(total_frames, frame_samples)
    heard: list[NDArray[np.int16]] = []
    heard_since_tick: list[NDArray[np.int16]] = []
    meter = TurnMeter()
    done = asyncio.Event()
    position = 0
    dtmf_tick = int(options.dtmf_at_s * 50) if options.dtmf else -1

    def on_tick(_tick: int) -> None:
        nonlocal position
        if position >= total_frames:
            done.set()
            return
        frame = frames[position]
        if position == dtmf_tick:
            rtp.send_dtmf(options.dtmf)
        rtp.send_frame(Frame(frame, None, bool(np.any(frame))))
        received = np.concatenate(heard_since_tick) if heard_since_tick else None
        heard_since_tick.clear()
        meter.feed(frame, received)
        position += 1

    async def listen() -> str:
        async for event in rtp.events():
            if isinstance(event, AudioIn):
                heard.append(event.pcm)
                heard_since_tick.append(event.pcm)
            elif isinstance(event, DtmfIn):
                log.info("dtmf_heard", digit=event.digit)
            elif isinstance(event, LegEnded):
                return event.reason
        return "media_ended"

    subscription: Subscription = clock.subscribe(on_tick)
    listener = asyncio.ensure_future(listen())
    bye = asyncio.ensure_future(handler.bye.wait())
    finished = asyncio.ensure_future(done.wait())
    started = time.monotonic()
    try:
        await asyncio.wait({listener, bye, finished}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        subscription.cancel()
        for task in (listener, bye, finished):
            task.cancel()
    ended_by = "agent" if handler.bye.is_set() else "caller"
    if listener.done() and not listener.cancelled() and not handler.bye.is_set():
        ended_by = f"media ({listener.result()})"
    recording = np.concatenate(heard) if heard else np.zeros(0, np.int16)
    return CallResult(
        answered=True,
        status=200,
        reason="OK",
        codec=negotiated.codec,
        seconds=time.monotonic() - started,
        recording=recording,
        recording_rate=rate,
        turn_latencies_ms=list(meter.latencies_ms),
        ended_by=ended_by,
    )
