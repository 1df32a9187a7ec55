"""A browser's call (or a WHIP client's) as a media leg, on aiortc's RTCPeerConnection.

Why aiortc for this leg and not for SIP: a browser speaks ICE, DTLS-SRTP and
SCTP data channels, which is exactly what ``RTCPeerConnection`` implements;
plain RTP/AVP peers are handled by the project's own RTP stack instead.

The leg answers an offer (:meth:`WebRtcLeg.answer`), then behaves like every
other leg: ``events()`` yields 20 ms mono frames at 48 kHz, digits and the
end; ``send_frame`` is called once per tick of the shared media clock and only
queues the frame for aiortc's sender (see :mod:`.tracks` for why the track
has no timer and hands aiortc encoded packets). Two data channels, both opened
by the page, are understood: ``"dtmf"`` carries key presses (a digit, or JSON
``{"digit": "5", "duration_ms": 100}``) and ``"events"`` carries JSON lines to
the page (:meth:`WebRtcLeg.send_event`: transcripts, latency, the hangup).

Inbound audio does not come through aiortc's receiver: :mod:`.rtp_tap` hands
the leg each RTP packet as aiortc's transport decrypts it, and the leg decodes
it with the same :class:`~telephony_agent.media.rtp.receiver.InboundStream` and
:class:`~telephony_agent.media.rtp.feed.InboundFeed` as a plain RTP call: no
added delay while packets arrive in order, a short reorder window, loss
concealment, and idle fill (one silent frame per tick after ``idle_fill_ms``
without caller audio, since the model detects the end of a turn from silence
and a muted or stalled page sends nothing). The leg also sends RTCP receiver
reports about the page's stream, as aiortc's receiver would have.

Endings, as ``LegEnded.reason``: ``"peer_closed"`` (the page closed the peer
connection, or its audio track ended), ``"connection_failed"`` (ICE or DTLS
failed, including consent expiry when the page vanished), ``"ice_timeout"``
(never connected within ``connect_timeout_s``), ``"closed"`` (:meth:`close`),
or the reason given to :meth:`hangup`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtcpSrPacket, RtpPacket

from telephony_agent.audio.clock import MediaClock, Subscription
from telephony_agent.audio.playout import Frame
from telephony_agent.media.leg import DtmfIn, LegEnded, LegEvent, MediaLeg
from telephony_agent.media.rtp.codecs import OpusCodec
from telephony_agent.media.rtp.feed import InboundFeed
from telephony_agent.media.rtp.receiver import InboundStream
from telephony_agent.media.rtp.rtcp import RtcpReport, RtcpReporter
from telephony_agent.media.rtp.stats import RtpStats
from telephony_agent.media.webrtc.ice import IceServer
from telephony_agent.media.webrtc.loopback import offer_loopback_candidates
from telephony_agent.media.webrtc.offer import WebRtcOfferError, check_offer
from telephony_agent.media.webrtc.rtp_tap import (
    ReceiverTap,
    local_ssrc_and_cname,
    wire_rtp,
    wire_sr,
)
from telephony_agent.media.webrtc.tracks import FRAME_SAMPLES, SAMPLE_RATE, OutboundAudioTrack

__all__ = ["IceServer", "WebRtcLeg", "WebRtcLegStats", "parse_dtmf_message"]

log = structlog.get_logger(__name__)

DTMF_LABEL = "dtmf"
EVENTS_LABEL = "events"
_DTMF_DIGITS = frozenset("0123456789*#ABCD")
_DEFAULT_DTMF_MS = 100
_MAX_DTMF_MS = 10_000
#: How long hangup() waits for the goodbye message to leave before closing.
_HANGUP_FLUSH_S = 0.5


@dataclass(frozen=True)
class WebRtcLegStats:
    """Counters for logs and tests."""

    frames_in: int
    frames_out: int
    #: The page's RTP: packets accepted, lost (concealed), arriving too late, undecodable.
    packets_in: int
    lost: int
    late: int
    decode_errors: int
    concealed_frames: int
    #: Interarrival jitter of the page's stream (RFC 3550 A.8), milliseconds.
    jitter_ms: float
    frames_dropped: int
    idle_frames: int
    dtmf_in: int
    dtmf_invalid: int
    events_sent: int
    events_dropped: int


def parse_dtmf_message(message: str | bytes) -> DtmfIn | None:
    """A key press from the page's ``"dtmf"`` channel, or None when the message is invalid.

    Accepted: one digit (``"5"``, ``"#"``, ``"A"``), or a JSON object
    ``{"digit": "5", "duration_ms": 100}`` (duration optional, 1-10000 ms).
    """
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError:
            return None
    text = message.strip()
    if len(text) == 1:
        digit = text.upper()
        return DtmfIn(digit, _DEFAULT_DTMF_MS) if digit in _DTMF_DIGITS else None
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    key = data.get("digit")
    if not isinstance(key, str) or len(key) != 1 or key.upper() not in _DTMF_DIGITS:
        return None
    duration = data.get("duration_ms", _DEFAULT_DTMF_MS)
    if isinstance(duration, bool) or not isinstance(duration, int | float):
        return None
    if not 0 < duration <= _MAX_DTMF_MS:
        return None
    return DtmfIn(key.upper(), int(duration))


def _opus_only() -> list[Any]:
    """The codec preference that makes aiortc negotiate Opus and nothing else.

    Why: the leg's rate is 48 kHz and its track sends Opus packets; if a page
    listed PCMU first, aiortc would otherwise pick PCMU.
    """
    return [
        codec
        for codec in RTCRtpSender.getCapabilities("audio").codecs
        if codec.mimeType.lower() == "audio/opus"
    ]


class WebRtcLeg(MediaLeg):
    """One browser call: an answered RTCPeerConnection with one audio track each way.

    Create with :meth:`answer`; return :attr:`answer_sdp` to the page.
    """

    sample_rate = SAMPLE_RATE
    codec = "opus"
    #: The answer (our local description, all candidates included) to return to the page.
    answer_sdp: str
    #: Silence handed on per tick after this long without caller audio (see module doc).
    idle_fill_ms = 200
    #: Give up when ICE + DTLS are not connected this long after answering.
    connect_timeout_s = 30.0
    #: Mean interval of our RTCP receiver reports (RFC 3550 randomises it by +-50 %).
    rtcp_interval_s = 5.0

    def __init__(self, pc: RTCPeerConnection, clock: MediaClock) -> None:
        """Use :meth:`answer`; this only wires the handlers."""
        self._pc = pc
        self._clock = clock
        self._track = OutboundAudioTrack()
        self._queue: asyncio.Queue[LegEvent] = asyncio.Queue()
        self._rtp_stats = RtpStats()
        self._feed = InboundFeed(
            self._queue, self._rtp_stats, FRAME_SAMPLES, idle_fill_ms=self.idle_fill_ms
        )
        self._stream: InboundStream | None = None
        self._rtcp: RtcpReporter | None = None
        self._tap: ReceiverTap | None = None
        self._loop = asyncio.get_running_loop()
        self._events_channel: RTCDataChannel | None = None
        self._reader: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._closing: asyncio.Task[None] | None = None
        self._ended = False
        self._end_reason: str | None = None
        self._connected = False
        self._answered_at = time.monotonic()
        self._dtmf_in = 0
        self._dtmf_invalid = 0
        self._events_sent = 0
        self._events_dropped = 0
        self.answer_sdp = ""
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_connection_state)

    # ------------------------------------------------------------------ answering

    @classmethod
    async def answer(
        cls,
        offer_sdp: str,
        *,
        clock: MediaClock,
        ice_servers: Sequence[IceServer] = (),
        allow_loopback: bool = False,
        ice_timeout_s: float = 10.0,
    ) -> WebRtcLeg:
        """Answer a browser's offer; the leg is ready once this returns.

        Raises :class:`WebRtcOfferError` when the offer is unusable (not SDP,
        no audio m-line, no Opus, rejected by aiortc) and ``TimeoutError`` when
        ICE gathering takes longer than `ice_timeout_s` (an unreachable STUN or
        TURN server); the peer connection is closed again in either case.
        Candidates are gathered completely before answering: the answer
        carries them all, so the page needs no trickle ICE. ``allow_loopback``
        adds a 127.0.0.1 host candidate (see :mod:`.loopback`).
        """
        audio = check_offer(offer_sdp)
        configuration = RTCConfiguration(
            # An explicit empty list: aiortc falls back to Google's STUN server on None.
            iceServers=[
                RTCIceServer(
                    urls=list(server.urls),
                    username=server.username,
                    credential=server.credential,
                )
                for server in ice_servers
            ]
        )
        pc = RTCPeerConnection(configuration)
        leg = cls(pc, clock)
        try:
            transceiver = pc.addTransceiver(leg._track, direction="sendrecv")
            transceiver.setCodecPreferences(_opus_only())
            leg._tap = ReceiverTap(transceiver.receiver, leg._on_rtp, leg._on_sender_report)
            leg._tap.install()
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
                leg._disable_other_media(transceiver)
                answer = await pc.createAnswer()
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
                raise WebRtcOfferError(f"the offer was rejected: {reason}") from exc
            if allow_loopback:
                offer_loopback_candidates(pc)
            try:
                await asyncio.wait_for(pc.setLocalDescription(answer), ice_timeout_s)
            except TimeoutError:
                raise TimeoutError(
                    f"ICE candidate gathering did not finish within {ice_timeout_s} s"
                ) from None
            leg.answer_sdp = pc.localDescription.sdp
            leg._start(transceiver)
        except BaseException:
            leg._discard()
            await pc.close()
            raise
        log.info(
            "webrtc_answered",
            codecs=list(audio.codecs),
            media=list(audio.media),
            loopback=allow_loopback,
            ice_servers=len(ice_servers),
        )
        return leg

    def _discard(self) -> None:
        """Forget a leg that was never handed out (failed answer): no events, no logs."""
        self._ended = True
        self._end_reason = "discarded"
        self._track.stop()
        if self._subscription is not None:
            self._subscription.cancel()
        if self._reader is not None:
            self._reader.cancel()

    def _disable_other_media(self, ours: RTCRtpTransceiver) -> None:
        """Answer any other audio or video m-line as inactive: nothing else is decoded."""
        for transceiver in self._pc.getTransceivers():
            if transceiver is not ours:
                transceiver.direction = "inactive"

    def _start(self, transceiver: RTCRtpTransceiver) -> None:
        answer = check_offer(self.answer_sdp)
        self._stream = InboundStream(OpusCodec(), answer.opus_payload_type, stats=self._rtp_stats)
        identity = local_ssrc_and_cname(self.answer_sdp)
        if identity is not None:
            self._rtcp = RtcpReporter(*identity, interval_s=self.rtcp_interval_s)
        remote = transceiver.receiver.track
        if remote is not None:
            self._reader = asyncio.create_task(self._watch_remote_track(remote))
        self._answered_at = time.monotonic()
        self._subscription = self._clock.subscribe(self._on_tick)

    # ------------------------------------------------------------------ MediaLeg

    def events(self) -> AsyncIterator[LegEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[LegEvent]:
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, LegEnded):
                return

    def send_frame(self, frame: Frame) -> None:
        if not self._ended:
            self._track.push(frame.pcm)

    async def hangup(self, reason: str) -> None:
        """Tell the page why (``{"type": "hangup", "reason": ...}``), then close."""
        if not self._ended:
            channel = self._events_channel
            if self._send_json({"type": "hangup", "reason": reason}) and channel is not None:
                await self._flush(channel)
        await self._shutdown(reason)

    async def close(self) -> None:
        """Close the peer connection (idempotent); ``events()`` ends with ``LegEnded``."""
        await self._shutdown("closed")

    def send_dtmf(self, digits: str) -> bool:
        """Tones towards a page have no channel (and no use): always False."""
        del digits
        return False

    # ------------------------------------------------------------------ page events

    def send_event(self, payload: Mapping[str, object]) -> None:
        """JSON to the page's ``"events"`` channel; dropped when there is none or it closed."""
        self._send_json(payload)

    def _send_json(self, payload: Mapping[str, object]) -> bool:
        channel = self._events_channel
        if channel is None or channel.readyState != "open":
            self._events_dropped += 1
            return False
        try:
            channel.send(json.dumps(payload, separators=(",", ":"), default=str))
        except Exception:  # the association died under us: same as closed
            self._events_dropped += 1
            log.debug("webrtc_event_dropped", exc_info=True)
            return False
        self._events_sent += 1
        return True

    @staticmethod
    async def _flush(channel: RTCDataChannel) -> None:
        """Wait (bounded) until the channel has handed its queue to SCTP."""
        await asyncio.sleep(0)
        for _ in range(int(_HANGUP_FLUSH_S / 0.01)):
            if channel.bufferedAmount <= 0:
                return
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ state

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def end_reason(self) -> str | None:
        return self._end_reason

    @property
    def connected(self) -> bool:
        """True once ICE and DTLS are up (media can flow)."""
        return self._connected

    @property
    def stats(self) -> WebRtcLegStats:
        rtp = self._rtp_stats
        reception = None if self._stream is None else self._stream.reception
        return WebRtcLegStats(
            frames_in=self._feed.frames_in,
            frames_out=self._track.pushed,
            packets_in=rtp.packets_in,
            lost=rtp.lost,
            late=rtp.late,
            decode_errors=rtp.decode_errors,
            concealed_frames=rtp.concealed_frames,
            jitter_ms=0.0 if reception is None else reception.jitter_ms,
            frames_dropped=self._track.dropped,
            idle_frames=rtp.idle_frames,
            dtmf_in=self._dtmf_in,
            dtmf_invalid=self._dtmf_invalid,
            events_sent=self._events_sent,
            events_dropped=self._events_dropped,
        )

    # ------------------------------------------------------------------ handlers

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        label = channel.label
        if label == DTMF_LABEL:
            channel.on("message", self._on_dtmf_message)
        elif label == EVENTS_LABEL:
            self._events_channel = channel
            channel.on("close", lambda: self._forget_channel(channel))
        else:
            log.debug("webrtc_datachannel_ignored", label=label)

    def _forget_channel(self, channel: RTCDataChannel) -> None:
        if self._events_channel is channel:
            self._events_channel = None

    def _on_dtmf_message(self, message: str | bytes) -> None:
        if self._ended:
            return
        event = parse_dtmf_message(message)
        if event is None:
            self._dtmf_invalid += 1
            log.debug("webrtc_dtmf_invalid", message=repr(message)[:40])
            return
        self._dtmf_in += 1
        self._queue.put_nowait(event)

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        if state == "connected" and not self._connected:
            self._connected = True
            log.info(
                "webrtc_connected",
                after_ms=round((time.monotonic() - self._answered_at) * 1000.0),
            )
        elif state == "failed":
            self._end("connection_failed")
        elif state == "closed":
            self._end("peer_closed")

    def _on_rtp(self, packet: RtpPacket) -> None:
        """One RTP packet of the page's audio, decrypted and parsed by aiortc's transport."""
        stream = self._stream
        if stream is None or self._ended:
            return
        try:
            items = stream.push(wire_rtp(packet), self._loop.time())
        except Exception:  # a packet must never take the transport's receive loop down
            self._rtp_stats.malformed += 1
            log.debug("webrtc_rtp_dropped", exc_info=True)
            return
        self._feed.packet_arrived()
        self._feed.deliver(items)

    def _on_sender_report(self, packet: RtcpSrPacket) -> None:
        """The page's RTCP SR: remembered so our next report lets it compute the RTT."""
        if self._rtcp is not None:
            self._rtcp.on_report(
                RtcpReport(sender_reports=[wire_sr(packet)]), self._loop.time(), time.time()
            )

    async def _watch_remote_track(self, track: MediaStreamTrack) -> None:
        """Wait for aiortc to end the page's track (RTCP BYE, DTLS closed).

        No audio comes through the track (see :mod:`.rtp_tap`); it is still the
        signal aiortc gives when the page goes away.
        """
        try:
            while True:
                await track.recv()
        except MediaStreamError:
            self._end("peer_closed")
        except Exception:
            log.exception("webrtc_inbound_failed")
            self._end("media_error")

    def _on_tick(self, tick: int) -> None:
        del tick
        if self._ended:
            return
        now = self._loop.time()
        stream = self._stream
        if stream is not None:
            self._feed.deliver(stream.poll(now))
        if self._feed.received_any:
            self._feed.on_tick()
        elif not self._connected and time.monotonic() - self._answered_at > self.connect_timeout_s:
            log.info("webrtc_connect_timeout", after_s=self.connect_timeout_s)
            self._end("ice_timeout")
            return
        rtcp = self._rtcp
        if rtcp is not None and self._connected and rtcp.due(now) and self._tap is not None:
            reception = None if stream is None else stream.reception
            self._tap.send_rtcp(
                rtcp.build_report(now, time.time(), sender=None, reception=reception)
            )

    # ------------------------------------------------------------------ ending

    def _end(self, reason: str) -> None:
        """Mark the leg ended once, tell events(), and start closing the connection."""
        if self._ended:
            return
        stream = self._stream
        if stream is not None:
            self._feed.deliver(stream.flush(self._loop.time()))
        self._ended = True
        self._end_reason = reason
        if self._subscription is not None:
            self._subscription.cancel()
        self._track.stop()
        self._queue.put_nowait(LegEnded(reason))
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close_pc())
        stats = self.stats
        log.info(
            "webrtc_leg_ended",
            reason=reason,
            frames_in=stats.frames_in,
            frames_out=stats.frames_out,
            packets_in=stats.packets_in,
            lost=stats.lost,
            late=stats.late,
            jitter_ms=round(stats.jitter_ms, 1),
            frames_dropped=stats.frames_dropped,
            idle_frames=stats.idle_frames,
            dtmf_in=stats.dtmf_in,
            dtmf_invalid=stats.dtmf_invalid,
        )

    async def _close_pc(self) -> None:
        try:
            await self._pc.close()
        except Exception:
            log.exception("webrtc_close_failed")
        reader = self._reader
        if reader is not None and not reader.done() and reader is not asyncio.current_task():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _shutdown(self, reason: str) -> None:
        self._end(reason)
        closing = self._closing
        if closing is not None:
            await asyncio.shield(closing)
