"""A plain RTP/AVP call leg (SIP media): the asyncio shell around the sans-I/O parts.

Why so thin: all decisions live in testable pieces without sockets -
:class:`InboundStream` (reorder, loss, decode), :class:`Packetizer` (numbering,
encoding, DTMF), :class:`RtcpReporter` (reports). This module only binds two UDP
sockets (RTP on an even port, RTCP on the next), forwards datagrams, and runs
three small chores on the shared media clock's tick: flushing the reorder
window, the inactivity timeout and RTCP reports. There is no per-call timer or
sleeping task; sending happens synchronously in :meth:`RtpLeg.send_frame`,
which the Call invokes once per tick.

Symmetric RTP (RFC 4961 behaviour, what SBCs call latching): the SDP address is
only a first guess. Behind NAT the caller's packets come from another address,
and the only one that reaches them is the one their packets come from. So the
first valid RTP packet (parseable, negotiated payload type) latches the leg to
its source: from then on we send there and drop, and count, packets from any
other address. A re-INVITE that changes the SDP address un-latches.

Idle fill: a peer may stop sending during silence (DTX, comfort noise), while a
digit plays (RFC 4733 packets replace audio) or in an outage. The model behind
the Call detects the end of a turn from silence, so after ``idle_fill_ms``
without caller audio the leg hands on one silent frame per tick. Frames the
inbound stream later conceals for the same hole are dropped so the hole is
not filled twice.

Nothing raises out of a datagram handler: whatever cannot be parsed is counted
in :class:`RtpStats` and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog

from telephony_agent.audio.clock import MediaClock, Subscription
from telephony_agent.audio.playout import Frame
from telephony_agent.media.leg import DtmfIn, LegEnded, LegEvent, MediaLeg
from telephony_agent.media.outlet import Outlet
from telephony_agent.media.rtp.codecs import make_codec
from telephony_agent.media.rtp.feed import InboundFeed
from telephony_agent.media.rtp.packetizer import Packetizer
from telephony_agent.media.rtp.ports import (
    BoundPair,
    DatagramForwarder,
    PortAllocator,
    bind_pair,
    size_pair_buffers,
)
from telephony_agent.media.rtp.receiver import InboundStream
from telephony_agent.media.rtp.rtcp import RtcpReporter, SenderCounters, parse_compound
from telephony_agent.media.rtp.srtp import SrtpContext
from telephony_agent.media.rtp.stats import RtpStats
from telephony_agent.media.rtp.wire import RtpPacket

__all__ = ["Address", "RtpLeg"]

log = structlog.get_logger(__name__)

Address = tuple[str, int]
_UNSPECIFIED = frozenset({"0.0.0.0", "::"})


def _address(host: str | None, port: int | None) -> Address | None:
    """A sendable (host, port), or None for "unknown yet" (no host, port 0, 0.0.0.0)."""
    if host is None or not port or host in _UNSPECIFIED:
        return None
    ipaddress.ip_address(host)  # ValueError for names: resolve them before calling
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return (host, port)


def _is_rtcp(data: bytes) -> bool:
    """RTCP packet types 192-223 in the second byte (RFC 5761 §4), as on a muxed port."""
    return len(data) >= 2 and 192 <= data[1] <= 223


class RtpLeg(MediaLeg):
    """One call's RTP media: a UDP pair, one codec, optional RFC 4733 DTMF.

    Create with :meth:`open` (binds the ports; the SDP then uses
    :attr:`local_port`), possibly before the codec is negotiated, and apply the
    negotiated values with :meth:`configure`. ``remote`` is the SDP connection
    address and port, or None when unknown (the leg then sends nothing until
    the first packet latches it). ``on_end(reason)`` is called once when the
    leg ends for any reason (``"rtp_timeout"``, the reason given to
    :meth:`hangup`/:meth:`close`).
    """

    def __init__(
        self,
        clock: MediaClock,
        *,
        codec: str = "PCMU",
        payload_type: int = 0,
        dtmf_payload_type: int | None = None,
        remote: Address | None = None,
        remote_rtcp: Address | None = None,
        bind_host: str = "0.0.0.0",
        allocator: PortAllocator | None = None,
        rtp_port: int | None = None,
        ptime_ms: int = 20,
        inactivity_timeout_s: float = 30.0,
        idle_fill_ms: int = 200,
        rtcp_interval_s: float = 5.0,
        on_end: Callable[[str], None] | None = None,
        socket_buffer_bytes: int | None = None,
    ) -> None:
        if allocator is None and rtp_port is None:
            raise ValueError("RtpLeg needs a PortAllocator or an explicit rtp_port")
        if rtp_port is not None and rtp_port % 2:
            raise ValueError(f"RTP port must be even, got {rtp_port}")
        self._clock = clock
        self._codec = make_codec(codec)
        self.codec = self._codec.name
        self.sample_rate = self._codec.sample_rate
        self.bind_host = bind_host
        self._allocator = allocator
        self._fixed_port = rtp_port
        self._buffer_bytes = socket_buffer_bytes
        self.inactivity_timeout_s = inactivity_timeout_s
        self._on_end = on_end
        self._stats = RtpStats()
        self._packetizer = Packetizer(
            self._codec, payload_type, dtmf_payload_type=dtmf_payload_type, ptime_ms=ptime_ms
        )
        self._stream = InboundStream(
            self._codec, payload_type, dtmf_payload_type=dtmf_payload_type, stats=self._stats
        )
        self._rtcp = RtcpReporter(
            self._packetizer.ssrc,
            f"{secrets.token_hex(8)}@telephony-agent",
            interval_s=rtcp_interval_s,
        )
        self._sdp_remote = _address(*remote) if remote is not None else None
        self._sdp_rtcp = _address(*remote_rtcp) if remote_rtcp is not None else None
        self._remote = self._sdp_remote
        self._latched: Address | None = None
        self._rtcp_source: Address | None = None
        self._send = True
        self._recv = True
        self._pair: BoundPair | None = None
        #: SDES-keyed SRTP once negotiated (`use_srtp`); None: plain RTP.
        self._srtp: SrtpContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: Outlet[LegEvent] = Outlet()
        self._subscription: Subscription | None = None
        self._ended = False
        self._end_reason: str | None = None
        self._last_rx = 0.0
        self._feed = InboundFeed(
            self._queue, self._stats, self.frame_samples, idle_fill_ms=idle_fill_ms
        )
        self._media_started = False

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(
        cls,
        clock: MediaClock,
        *,
        codec: str = "PCMU",
        payload_type: int = 0,
        dtmf_payload_type: int | None = None,
        remote: Address | None = None,
        remote_rtcp: Address | None = None,
        bind_host: str = "0.0.0.0",
        allocator: PortAllocator | None = None,
        rtp_port: int | None = None,
        ptime_ms: int = 20,
        inactivity_timeout_s: float = 30.0,
        idle_fill_ms: int = 200,
        rtcp_interval_s: float = 5.0,
        on_end: Callable[[str], None] | None = None,
        socket_buffer_bytes: int | None = None,
    ) -> RtpLeg:
        """Create the leg and bind its sockets (see :meth:`start`)."""
        leg = cls(
            clock,
            codec=codec,
            payload_type=payload_type,
            dtmf_payload_type=dtmf_payload_type,
            remote=remote,
            remote_rtcp=remote_rtcp,
            bind_host=bind_host,
            allocator=allocator,
            rtp_port=rtp_port,
            ptime_ms=ptime_ms,
            inactivity_timeout_s=inactivity_timeout_s,
            idle_fill_ms=idle_fill_ms,
            rtcp_interval_s=rtcp_interval_s,
            on_end=on_end,
            socket_buffer_bytes=socket_buffer_bytes,
        )
        await leg.start()
        return leg

    async def start(self) -> int:
        """Bind RTP and RTCP; returns the RTP port. Raises PortsExhausted or OSError."""
        if self._pair is not None:
            return self._pair.port
        loop = asyncio.get_running_loop()
        self._loop = loop

        def rtp() -> asyncio.DatagramProtocol:
            return DatagramForwarder(self._on_rtp)

        def rtcp() -> asyncio.DatagramProtocol:
            return DatagramForwarder(self._on_rtcp)

        if self._allocator is not None:
            self._pair = await bind_pair(
                self._allocator, self.bind_host, rtp, rtcp, buffer_bytes=self._buffer_bytes
            )
        else:
            assert self._fixed_port is not None
            port = self._fixed_port
            rtp_transport, _ = await loop.create_datagram_endpoint(
                rtp, local_addr=(self.bind_host, port)
            )
            try:
                rtcp_transport, _ = await loop.create_datagram_endpoint(
                    rtcp, local_addr=(self.bind_host, port + 1)
                )
            except OSError:
                rtp_transport.close()
                raise
            self._pair = BoundPair(port, rtp_transport, rtcp_transport)
            if self._buffer_bytes is not None:
                size_pair_buffers(self._pair, self._buffer_bytes)
        self._last_rx = loop.time()
        log.debug(
            "rtp_leg_open",
            port=self._pair.port,
            codec=self.codec,
            remote=self._remote,
            ssrc=self._packetizer.ssrc,
        )
        return self._pair.port

    @property
    def local_port(self) -> int:
        """The bound RTP port (RTCP is this + 1), for the SDP answer."""
        if self._pair is None:
            raise RuntimeError("RtpLeg is not started")
        return self._pair.port

    def socket_inodes(self) -> list[int]:
        """Inodes of the RTP and RTCP sockets (for the kernel's drop counters)."""
        return self._pair.inodes() if self._pair is not None and not self._ended else []

    @property
    def local_rtcp_port(self) -> int:
        return self.local_port + 1

    @property
    def remote(self) -> Address | None:
        """Where RTP goes now: the latched source, else the SDP address."""
        return self._remote

    @property
    def latched(self) -> Address | None:
        """The source address RTP is accepted from, once the first packet arrived."""
        return self._latched

    @property
    def ssrc(self) -> int:
        """Our SSRC."""
        return self._packetizer.ssrc

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def end_reason(self) -> str | None:
        return self._end_reason

    @property
    def stats(self) -> RtpStats:
        """A snapshot of the counters, with jitter and the peer's last report filled in."""
        snapshot = dataclasses.replace(self._stats)
        snapshot.octets_out = self._packetizer.octets
        reception = self._stream.reception
        if reception is not None:
            snapshot.jitter_ms = reception.jitter_ms
        peer = self._rtcp.peer
        if peer is not None:
            snapshot.peer_fraction_lost = peer.fraction_lost
            snapshot.peer_cumulative_lost = peer.cumulative_lost
            snapshot.peer_jitter_ms = peer.jitter_units * 1000.0 / self._codec.clock_rate
            snapshot.rtt_ms = None if peer.rtt_s is None else peer.rtt_s * 1000.0
        return snapshot

    # ------------------------------------------------------------------ MediaLeg

    def events(self) -> AsyncIterator[LegEvent]:
        """Inbound events; the first call also starts the leg's tick chores.

        The inactivity timeout counts from here, not from :meth:`start`: an
        outbound call may ring for longer than the timeout before media begins.
        """
        self._start_media()
        return self._iterate()

    def deliver_to(self, handler: Callable[[LegEvent], None] | None) -> bool:
        """Inbound events straight to `handler` from the datagram callback (see
        `media/outlet.py`); None hands them back to `events()`."""
        if handler is not None:
            self._start_media()
        self._queue.deliver_to(handler)
        return True

    def _start_media(self) -> None:
        self._media_started = True
        if self._subscription is None and not self._ended:
            if self._loop is not None and not self._feed.received_any:
                self._last_rx = self._loop.time()
            self._subscription = self._clock.subscribe(self._on_tick)

    async def _iterate(self) -> AsyncIterator[LegEvent]:
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, LegEnded):
                return

    def inject(self, event: DtmfIn | LegEnded) -> None:
        """Signalling's events (SIP INFO digits, BYE) join the media events in order.

        Why here and not in a wrapper's own queue: one queue means one task
        wake-up per inbound frame on the hot path instead of two. `LegEnded`
        closes the leg like :meth:`close`.
        """
        if self._ended:
            return
        if isinstance(event, LegEnded):
            self.close(event.reason)
        else:
            self._queue.put_nowait(event)

    def send_frame(self, frame: Frame) -> None:
        if self._ended:
            return
        self._media_started = True
        packetizer = self._packetizer
        destination = self._remote
        pair = self._pair
        if not self._send or destination is None or pair is None:
            packetizer.skip()
            return
        data = packetizer.packetize(frame)
        if data is None:
            return
        if self._srtp is not None:
            data = self._srtp.protect(data)
        pair.rtp.sendto(data, destination)
        self._stats.packets_out += 1

    async def hangup(self, reason: str) -> None:
        """End the leg from our side: RTCP BYE, close sockets, release the ports."""
        self.close(reason)

    def use_srtp(self, context: SrtpContext | None) -> None:
        """Protect what we send and check what we receive with these keys from now on."""
        self._srtp = context

    @property
    def srtp(self) -> SrtpContext | None:
        return self._srtp

    def deliver_g711(self) -> bool:
        """Hand on PCMU/PCMA payloads as received, undecoded (G.711 passthrough); after a
        re-INVITE to the other law, its payloads are handed on in their own law."""
        if not self._stream.deliver_payloads():
            return False
        self._feed.set_passthrough(self._stream.passthrough_law)
        log.debug("rtp_g711_passthrough", codec=self.codec)
        return True

    def send_dtmf(self, digits: str) -> bool:
        """Queue RFC 4733 digits; False without a negotiated telephone-event type."""
        if self._ended or not self._packetizer.send_dtmf(digits):
            return False
        self._stats.dtmf_out += len(digits)
        return True

    # ------------------------------------------------------------------ SIP-facing control

    def configure(
        self,
        *,
        codec: str,
        payload_type: int,
        telephone_event_pt: int | None = None,
        remote: Address | None = None,
        remote_rtcp: Address | None = None,
    ) -> None:
        """Apply a negotiated SDP: codec, payload types, the peer's address.

        Called once after the offer/answer (the leg may be opened before, to put
        its port into the SDP), and again for every re-INVITE. `remote` hosts
        must be IP literals (resolve names first); ``None``, port 0 or
        ``0.0.0.0`` mean "unknown": nothing is sent until the first packet
        latches. A new, different address un-latches (the media moved); the
        same or an unknown address keeps the latch.

        Once media has flowed (``events()`` or ``send_frame`` was called) the
        codec may only change to one of the same PCM rate, because the Call's
        resamplers are sized for it; anything else raises ValueError and the
        re-offer should be refused (488).
        """
        new_remote = None if remote is None else _address(*remote)
        new_rtcp = None if remote_rtcp is None else _address(*remote_rtcp)
        new_codec = self._codec
        if codec.lower() != self._codec.name.lower():
            new_codec = make_codec(codec)
            if new_codec.sample_rate != self.sample_rate and self._media_started:
                raise ValueError(
                    f"codec change {self.codec} -> {new_codec.name} changes the PCM rate "
                    f"({self.sample_rate} -> {new_codec.sample_rate} Hz) mid-call"
                )
        packetizer = self._packetizer
        if (
            new_codec is not self._codec
            or payload_type != packetizer.payload_type
            or telephone_event_pt != packetizer.dtmf_payload_type
        ):
            self._codec = new_codec
            self.codec = new_codec.name
            self.sample_rate = new_codec.sample_rate
            packetizer.set_format(new_codec, payload_type, telephone_event_pt)
            self._feed.set_frame_samples(self.frame_samples)
            self._feed.deliver(self._stream.set_format(new_codec, payload_type, telephone_event_pt))
            self._feed.set_passthrough(self._stream.passthrough_law)
        self._sdp_rtcp = new_rtcp
        if new_remote == self._sdp_remote:
            return
        self._sdp_remote = new_remote
        if new_remote is None or new_remote == self._latched:
            return  # nothing new to send to: keep the latched source
        log.info("rtp_remote_changed", old=self._remote, new=new_remote)
        self._remote = new_remote
        self._latched = None
        self._rtcp_source = None

    def update_remote(
        self,
        host: str | None,
        port: int | None,
        codec: str,
        payload_type: int,
        dtmf_payload_type: int | None,
    ) -> None:
        """Positional form of :meth:`configure` for a re-INVITE's SDP."""
        remote = None if host is None or port is None else (host, port)
        self.configure(
            codec=codec,
            payload_type=payload_type,
            telephone_event_pt=dtmf_payload_type,
            remote=remote,
        )

    def set_direction(self, send: bool, receive: bool) -> None:
        """Hold and resume, from the SDP direction seen from our side.

        ``send`` False: no RTP goes out (timestamps keep running). ``receive``
        False: inbound audio is ignored and the inactivity timeout is suspended,
        since a held peer legitimately sends nothing. RTCP continues either way.
        """
        if receive and not self._recv and self._loop is not None:
            self._last_rx = self._loop.time()
            self._feed.resume()
            self._stream.restart()
        self._send = send
        self._recv = receive

    def close(self, reason: str = "closed") -> None:
        """End the leg now (BYE received, call torn down): idempotent, synchronous."""
        self._end(reason)

    # ------------------------------------------------------------------ inbound

    def _on_rtp(self, data: bytes, addr: Any) -> None:
        try:
            self._handle_rtp(data, addr)
        except Exception:
            self._stats.malformed += 1
            log.debug("rtp_datagram_dropped", exc_info=True)

    def _handle_rtp(self, data: bytes, addr: Any) -> None:
        if self._ended or self._loop is None:
            return
        if _is_rtcp(data):
            self._handle_rtcp(data, addr)
            return
        if self._srtp is not None:
            plain = self._srtp.unprotect(data)
            if plain is None:  # not authentic: noise or an attack, never audio
                self._stats.malformed += 1
                return
            data = plain
        try:
            packet = RtpPacket.parse(data)
        except (ValueError, IndexError):
            self._stats.malformed += 1
            return
        source: Address = (addr[0], addr[1])
        latched = self._latched
        if latched is None:
            pt = packet.payload_type
            if pt != self._stream.payload_type and pt != self._stream.dtmf_payload_type:
                self._stats.wrong_pt += 1
                return
            self._latch(source)
        elif source != latched:
            self._stats.foreign_source += 1
            return
        now = self._loop.time()
        self._last_rx = now
        self._feed.packet_arrived()
        if not self._recv:
            return
        self._feed.deliver(self._stream.push(packet, now))

    def _latch(self, source: Address) -> None:
        if source != self._remote:
            log.info("rtp_latched", sdp=self._sdp_remote, source=source)
        self._latched = source
        self._remote = source

    def _on_rtcp(self, data: bytes, addr: Any) -> None:
        try:
            self._handle_rtcp(data, addr)
        except Exception:
            self._stats.rtcp_malformed += 1
            log.debug("rtcp_datagram_dropped", exc_info=True)

    def _handle_rtcp(self, data: bytes, addr: Any) -> None:
        if self._ended or self._loop is None:
            return
        source: Address = (addr[0], addr[1])
        latched = self._latched
        if latched is not None and source[0] != latched[0]:
            self._stats.foreign_source += 1
            return
        if self._srtp is not None:
            plain = self._srtp.unprotect_rtcp(data)
            if plain is None:
                self._stats.rtcp_malformed += 1
                return
            data = plain
        try:
            report = parse_compound(data)
        except (ValueError, IndexError):
            self._stats.rtcp_malformed += 1
            return
        self._stats.rtcp_in += 1
        self._rtcp_source = source
        self._rtcp.on_report(report, self._loop.time(), time.time())

    # ------------------------------------------------------------------ tick chores

    def _on_tick(self, tick: int) -> None:
        del tick
        loop = self._loop
        if self._ended or loop is None:
            return
        now = loop.time()
        self._feed.deliver(self._stream.poll(now))
        if self._recv:
            self._feed.on_tick()
            if now - self._last_rx > self.inactivity_timeout_s:
                log.info("rtp_timeout", after_s=self.inactivity_timeout_s)
                self._end("rtp_timeout")
                return
        if self._rtcp.due(now):
            self._send_rtcp(self._build_report(now))

    def _build_report(self, now: float) -> bytes:
        packetizer = self._packetizer
        sender = SenderCounters(
            packets=packetizer.packets,
            octets=packetizer.octets,
            rtp_timestamp=(packetizer.timestamp - packetizer.step) & 0xFFFFFFFF,
        )
        return self._rtcp.build_report(
            now, time.time(), sender=sender, reception=self._stream.reception
        )

    def _rtcp_destination(self) -> Address | None:
        if self._rtcp_source is not None:
            return self._rtcp_source
        if self._sdp_rtcp is not None and self._latched is None:
            return self._sdp_rtcp
        remote = self._remote
        return None if remote is None else (remote[0], remote[1] + 1)

    def _send_rtcp(self, data: bytes) -> None:
        destination = self._rtcp_destination()
        pair = self._pair
        if destination is None or pair is None:
            return
        if self._srtp is not None:
            data = self._srtp.protect_rtcp(data)
        pair.rtcp.sendto(data, destination)
        self._stats.rtcp_out += 1

    # ------------------------------------------------------------------ ending

    def _end(self, reason: str) -> None:
        if self._ended:
            return
        loop = self._loop
        if loop is not None:
            self._feed.deliver(self._stream.flush(loop.time()))
        self._ended = True
        self._end_reason = reason
        if self._subscription is not None:
            self._subscription.cancel()
        pair = self._pair
        if pair is not None:
            with contextlib.suppress(OSError):
                self._send_rtcp(self._rtcp.build_bye())
            pair.rtp.close()
            pair.rtcp.close()
            if self._allocator is not None:
                self._allocator.release(pair.port)
        self._queue.put_nowait(LegEnded(reason))
        stats = self.stats
        log.info(
            "rtp_leg_ended",
            reason=reason,
            packets_in=stats.packets_in,
            packets_out=stats.packets_out,
            lost=stats.lost,
            late=stats.late,
            jitter_ms=round(stats.jitter_ms, 1),
            foreign_source=stats.foreign_source,
            malformed=stats.malformed,
        )
        if self._on_end is not None:
            try:
                self._on_end(reason)
            except Exception:
                log.exception("rtp_on_end_failed")
