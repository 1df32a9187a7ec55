"""RtpLeg over real UDP on 127.0.0.1: audio both ways, latching, timeout, hold, DTMF,
RTCP, malformed input, re-INVITE changes and teardown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pytest
from aiortc.rtp import RtpPacket
from numpy.typing import NDArray

from telephony_agent.audio.clock import MediaClock
from telephony_agent.audio.g711 import ulaw_decode, ulaw_encode
from telephony_agent.audio.playout import Frame
from telephony_agent.media.leg import AudioIn, DtmfIn, LegEnded, LegEvent
from telephony_agent.media.rtp import PortAllocator, RtpLeg
from telephony_agent.media.rtp.rtcp import parse_compound
from tests.media.rtp_support import aligned, frames_of, rtp, sine

HOST = "127.0.0.1"
FAST_MS = 5  # ticks 4x faster than real time where only ordering matters


@pytest.fixture
def allocator() -> PortAllocator:
    return PortAllocator(42000, 42999)


class RawPeer(asyncio.DatagramProtocol):
    """A bare UDP socket: records what arrives, sends what a test crafts."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, Any]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((data, addr))
        self.arrived.set()

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, (HOST, port))

    def rtp(self) -> list[RtpPacket]:
        return [RtpPacket.parse(d) for d, _ in self.received if not 192 <= d[1] <= 223]


@contextlib.asynccontextmanager
async def raw_peer(port: int = 0) -> AsyncIterator[RawPeer]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(RawPeer, local_addr=(HOST, port))
    try:
        yield peer
    finally:
        transport.close()


@contextlib.asynccontextmanager
async def raw_pair() -> AsyncIterator[tuple[RawPeer, RawPeer]]:
    """Two raw sockets on consecutive ports (RTP, RTCP), retrying if port + 1 is taken."""
    for _ in range(20):
        async with contextlib.AsyncExitStack() as stack:
            rtp_peer = await stack.enter_async_context(raw_peer())
            try:
                rtcp_peer = await stack.enter_async_context(raw_peer(rtp_peer.port + 1))
            except OSError:
                continue
            yield rtp_peer, rtcp_peer
            return
    raise RuntimeError("no consecutive free ports")


@dataclass
class Collector:
    """Reads a leg's events in the background."""

    audio: list[NDArray[np.int16]] = field(default_factory=list)
    digits: list[DtmfIn] = field(default_factory=list)
    ended: LegEnded | None = None
    task: asyncio.Task[None] | None = None

    async def run(self, events: AsyncIterator[LegEvent]) -> None:
        async for event in events:
            if isinstance(event, AudioIn):
                self.audio.append(event.pcm)
            elif isinstance(event, DtmfIn):
                self.digits.append(event)
            else:
                self.ended = event


def collect(leg: RtpLeg) -> Collector:
    collector = Collector()
    collector.task = asyncio.create_task(collector.run(leg.events()))
    return collector


def pump(clock: MediaClock, leg: RtpLeg, source: Callable[[int], Frame]) -> Callable[[], None]:
    """Calls leg.send_frame once per tick, as the Call does; returns a stop function."""
    count = {"n": 0}

    def tick(_: int) -> None:
        leg.send_frame(source(count["n"]))
        count["n"] += 1

    return clock.subscribe(tick).cancel


def silence(n: int) -> Callable[[int], Frame]:
    return lambda _: Frame(np.zeros(n, np.int16), None, False)


def from_signal(signal: NDArray[np.int16], n: int) -> Callable[[int], Frame]:
    rows = frames_of(signal, n)

    def source(i: int) -> Frame:
        if i < len(rows):
            return Frame(rows[i], "item", True)
        return Frame(np.zeros(n, np.int16), None, False)

    return source


async def until(predicate: Callable[[], bool], within_s: float = 2.0) -> None:
    """Poll a condition that datagram callbacks make true (there is no event to await)."""
    for _ in range(int(within_s / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"condition not met within {within_s} s")


async def pair_of_legs(
    clock: MediaClock, allocator: PortAllocator, codec: str, pt: int, **kwargs: Any
) -> tuple[RtpLeg, RtpLeg]:
    a = await RtpLeg.open(
        clock, codec=codec, payload_type=pt, bind_host=HOST, allocator=allocator, **kwargs
    )
    b = await RtpLeg.open(
        clock,
        codec=codec,
        payload_type=pt,
        bind_host=HOST,
        allocator=allocator,
        remote=(HOST, a.local_port),
        **kwargs,
    )
    a.configure(
        codec=codec,
        payload_type=pt,
        telephone_event_pt=kwargs.get("dtmf_payload_type"),
        remote=(HOST, b.local_port),
    )
    return a, b


# ---------------------------------------------------------------------- audio


@pytest.mark.parametrize(("codec", "pt"), [("PCMU", 0), ("PCMA", 8), ("G722", 9), ("opus", 111)])
async def test_two_legs_exchange_audio(allocator: PortAllocator, codec: str, pt: int) -> None:
    clock = MediaClock(FAST_MS)
    a, b = await pair_of_legs(clock, allocator, codec, pt)
    n = a.frame_samples
    signal = sine(a.sample_rate, 0.6, 350.0)
    frames = len(frames_of(signal, n))
    rx_a, rx_b = collect(a), collect(b)
    stops = [pump(clock, a, from_signal(signal, n)), pump(clock, b, silence(n))]
    await until(lambda: len(rx_b.audio) >= frames + 10 and len(rx_a.audio) >= frames)
    for stop in stops:
        stop()
    await a.hangup("done")
    await b.hangup("done")
    assert all(f.size == n and f.dtype == np.int16 for f in rx_b.audio)
    heard = np.concatenate(rx_b.audio)
    if codec == "PCMU":
        expected = ulaw_decode(ulaw_encode(signal[: frames * n]))
        assert np.array_equal(heard[: frames * n], expected)
    else:
        ref, out = aligned(signal, heard, 1000)
        assert np.corrcoef(ref, out)[0, 1] > 0.95
    assert np.abs(np.concatenate(rx_a.audio)).max() <= 16  # b kept sending (coded) silence
    stats = b.stats
    assert stats.packets_in >= frames and stats.lost == stats.malformed == 0
    assert b.latched == (HOST, a.local_port)
    assert allocator.in_use == 0


async def test_open_before_negotiation_then_configure(allocator: PortAllocator) -> None:
    clock = MediaClock()
    leg = await RtpLeg.open(clock, bind_host=HOST, allocator=allocator)
    assert (leg.codec, leg.sample_rate, leg.remote) == ("PCMU", 8000, None)
    leg.configure(codec="G722", payload_type=9, telephone_event_pt=101, remote=(HOST, 4000))
    assert (leg.codec, leg.sample_rate, leg.frame_samples) == ("G722", 16000, 320)
    assert leg.remote == (HOST, 4000)
    assert leg.local_rtcp_port == leg.local_port + 1
    with pytest.raises(ValueError):
        leg.configure(codec="PCMU", payload_type=0, remote=("sip.example.com", 4000))
    leg.close()


# ---------------------------------------------------------------------- latching


async def test_latches_to_the_real_source_and_drops_foreign_ones(
    allocator: PortAllocator,
) -> None:
    clock = MediaClock(FAST_MS)
    async with raw_peer() as caller, raw_peer() as intruder, raw_peer() as sdp_target:
        # The SDP says sdp_target; the caller's packets really come from elsewhere (NAT).
        leg = await RtpLeg.open(
            clock, bind_host=HOST, allocator=allocator, remote=(HOST, sdp_target.port)
        )
        rx = collect(leg)
        stop = pump(clock, leg, silence(160))
        await until(lambda: len(sdp_target.received) >= 2)
        # A wrong payload type must not latch.
        intruder.send(rtp(0, 0, pt=8, payload=b"\xd5" * 160).serialize(), leg.local_port)
        await asyncio.sleep(0.02)
        assert leg.latched is None
        for seq in range(5):
            packet = rtp(seq, 160 * seq, ssrc=7, payload=b"\x80" * 160)
            caller.send(packet.serialize(), leg.local_port)
            await asyncio.sleep(0.005)
        await until(lambda: len(rx.audio) >= 5)
        assert leg.latched == (HOST, caller.port) == leg.remote
        # Now packets from anyone else are dropped, even with the right SSRC.
        for seq in range(5, 8):
            packet = rtp(seq, 160 * seq, ssrc=7, payload=b"\x00" * 160)
            intruder.send(packet.serialize(), leg.local_port)
        await until(lambda: leg.stats.foreign_source == 3)
        await until(lambda: len(caller.rtp()) >= 3)  # our audio now goes to the caller
        stop()
        sent_to_sdp = len(sdp_target.received)
        await asyncio.sleep(0.03)
        assert len(sdp_target.received) == sent_to_sdp
        assert leg.stats.wrong_pt == 1
        # Nothing of the intruder's payload (μ-law 0x00, full scale negative) was heard.
        assert all(int(f.min()) > -30000 for f in rx.audio)
        leg.close()


async def test_changed_sdp_address_unlatches(allocator: PortAllocator) -> None:
    clock = MediaClock(FAST_MS)
    async with raw_peer() as first, raw_peer() as second:
        leg = await RtpLeg.open(clock, bind_host=HOST, allocator=allocator)
        first.send(rtp(0, 0, ssrc=1).serialize(), leg.local_port)
        await until(lambda: leg.latched is not None)
        leg.update_remote(HOST, first.port, "PCMU", 0, None)  # same address: keep the latch
        assert leg.latched == (HOST, first.port)
        leg.update_remote(HOST, second.port, "PCMA", 8, 101)
        assert leg.latched is None and leg.remote == (HOST, second.port)
        assert leg.codec == "PCMA"
        stop = pump(clock, leg, silence(160))
        await until(lambda: len(second.rtp()) >= 2)
        stop()
        assert {p.payload_type for p in second.rtp()} == {8}
        assert second.rtp()[0].marker == 1
        with pytest.raises(ValueError, match="PCM rate"):
            leg.update_remote(HOST, second.port, "G722", 9, None)
        leg.close()


# ---------------------------------------------------------------------- timeout, hold


async def test_inactivity_timeout_ends_the_leg(allocator: PortAllocator) -> None:
    clock = MediaClock()
    ended: list[str] = []
    leg = await RtpLeg.open(
        clock, bind_host=HOST, allocator=allocator, inactivity_timeout_s=0.3, on_end=ended.append
    )
    await asyncio.sleep(0.35)  # ringing: the timeout only counts once media starts
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = [event async for event in leg.events()]
    assert events == [LegEnded("rtp_timeout")]
    assert 0.3 <= loop.time() - started < 0.6
    assert ended == ["rtp_timeout"] and leg.end_reason == "rtp_timeout"
    assert allocator.in_use == 0


async def test_packets_keep_the_leg_alive_and_idle_fill_covers_gaps(
    allocator: PortAllocator,
) -> None:
    clock = MediaClock()
    async with raw_peer() as caller:
        leg = await RtpLeg.open(
            clock, bind_host=HOST, allocator=allocator, inactivity_timeout_s=0.3, idle_fill_ms=60
        )
        rx = collect(leg)
        for seq in range(25):  # 0.5 s of packets, longer than the timeout
            packet = rtp(seq, 160 * seq, ssrc=9, payload=b"\x80" * 160)
            caller.send(packet.serialize(), leg.local_port)
            await asyncio.sleep(0.02)
        assert not leg.ended
        # Then the caller goes quiet (DTX): silence is filled in, then the timeout ends it.
        await until(lambda: rx.ended is not None, within_s=1.0)
        assert rx.ended == LegEnded("rtp_timeout")
        assert leg.stats.idle_frames >= 5
        assert len(rx.audio) >= 25 + 5


async def test_a_hole_already_idle_filled_is_not_concealed_again(
    allocator: PortAllocator,
) -> None:
    clock = MediaClock()
    async with raw_peer() as caller:
        leg = await RtpLeg.open(clock, bind_host=HOST, allocator=allocator, idle_fill_ms=60)
        rx = collect(leg)

        def send(seq: int) -> None:
            packet = rtp(seq, 160 * seq, ssrc=4, payload=b"\x90" * 160)
            caller.send(packet.serialize(), leg.local_port)

        for seq in range(3):
            send(seq)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # an outage: 15 packets lost
        send(18)
        await until(lambda: leg.stats.lost == 15)
        leg.close()
        assert rx.task is not None
        await rx.task
        stats = leg.stats
        assert stats.concealed_frames == 10  # capped at 200 ms, and all of it ...
        assert stats.idle_frames >= 10  # ... already covered by the idle fill
        assert len(rx.audio) == 3 + stats.idle_frames + 1


async def test_hold_stops_sending_and_suspends_the_timeout(allocator: PortAllocator) -> None:
    clock = MediaClock()
    async with raw_peer() as caller:
        leg = await RtpLeg.open(
            clock,
            bind_host=HOST,
            allocator=allocator,
            remote=(HOST, caller.port),
            inactivity_timeout_s=0.3,
        )
        rx = collect(leg)
        stop = pump(clock, leg, silence(160))
        await until(lambda: len(caller.rtp()) >= 3)
        leg.set_direction(send=False, receive=False)
        await asyncio.sleep(0.05)
        held_at = len(caller.rtp())
        await asyncio.sleep(0.4)  # longer than the inactivity timeout
        assert len(caller.rtp()) == held_at
        assert not leg.ended and rx.ended is None
        leg.set_direction(send=True, receive=True)
        await until(lambda: len(caller.rtp()) >= held_at + 3)
        packets = caller.rtp()
        resumed = packets[held_at]
        assert resumed.marker == 1
        assert resumed.sequence_number == (packets[held_at - 1].sequence_number + 1) & 0xFFFF
        # The timestamp kept running through the hold (about 0.4 s = 3200 units).
        gap = (resumed.timestamp - packets[held_at - 1].timestamp) & 0xFFFFFFFF
        assert gap >= 3000
        # Receiving again: with nothing arriving, the timeout applies again.
        await until(lambda: rx.ended is not None, within_s=1.0)
        stop()


async def test_inbound_audio_ignored_while_not_receiving(allocator: PortAllocator) -> None:
    clock = MediaClock(FAST_MS)
    async with raw_peer() as caller:
        leg = await RtpLeg.open(clock, bind_host=HOST, allocator=allocator, idle_fill_ms=1000)
        rx = collect(leg)

        def send(seq: int) -> None:
            packet = rtp(seq, 160 * seq, ssrc=3, payload=b"\x90" * 160)
            caller.send(packet.serialize(), leg.local_port)

        for seq in range(3):
            send(seq)
        await until(lambda: len(rx.audio) == 3)
        leg.set_direction(send=True, receive=False)
        for seq in range(3, 30):
            send(seq)
        await asyncio.sleep(0.05)
        assert len(rx.audio) == 3
        leg.set_direction(send=True, receive=True)
        send(30)
        await until(lambda: len(rx.audio) == 4)
        assert leg.stats.lost == 0 and leg.stats.concealed_frames == 0
        leg.close()


# ---------------------------------------------------------------------- DTMF


async def test_dtmf_from_one_leg_arrives_as_digits_on_the_other(
    allocator: PortAllocator,
) -> None:
    clock = MediaClock(FAST_MS)
    a, b = await pair_of_legs(clock, allocator, "PCMU", 0, dtmf_payload_type=101)
    rx = collect(b)
    stop = pump(clock, a, silence(160))
    assert a.send_dtmf("1#9")
    await until(lambda: len(rx.digits) >= 3)
    await asyncio.sleep(0.05)  # no duplicates from the repeated end packets
    stop()
    assert [(d.digit, d.duration_ms) for d in rx.digits] == [("1", 100), ("#", 100), ("9", 100)]
    assert a.stats.dtmf_out == 3 and b.stats.dtmf_in == 3
    a.close()
    b.close()


async def test_send_dtmf_false_without_telephone_event(allocator: PortAllocator) -> None:
    leg = await RtpLeg.open(MediaClock(), bind_host=HOST, allocator=allocator)
    assert not leg.send_dtmf("1")
    leg.configure(codec="PCMU", payload_type=0, telephone_event_pt=101)
    assert leg.send_dtmf("1")
    assert not leg.send_dtmf("1?")
    leg.close()
    assert not leg.send_dtmf("1")


# ---------------------------------------------------------------------- robustness, RTCP


async def test_malformed_datagrams_are_counted_never_raised(allocator: PortAllocator) -> None:
    clock = MediaClock(FAST_MS)
    async with raw_peer() as caller:
        leg = await RtpLeg.open(clock, bind_host=HOST, allocator=allocator)
        rx = collect(leg)
        for junk in (b"\x00", b"\x40" + b"\x00" * 20, b"\x8f\x00" + b"\x00" * 10, b"\x80"):
            caller.send(junk, leg.local_port)
        for junk in (b"\x80\xc8\x00\x09", b"\x00" * 30, b"\x81\xc9\x00\x01abcd"):
            caller.send(junk, leg.local_rtcp_port)
        await until(lambda: leg.stats.malformed >= 4 and leg.stats.rtcp_malformed >= 3)
        good = rtp(0, 0, ssrc=5).serialize()
        caller.send(good, leg.local_port)
        await until(lambda: len(rx.audio) == 1)
        assert not leg.ended
        leg.close()


async def test_rtcp_reports_flow_both_ways(allocator: PortAllocator) -> None:
    clock = MediaClock(FAST_MS)
    a, b = await pair_of_legs(clock, allocator, "PCMU", 0, rtcp_interval_s=0.1)
    collect(a)
    collect(b)
    stops = [pump(clock, a, silence(160)), pump(clock, b, silence(160))]
    await until(lambda: a.stats.rtcp_in >= 2 and b.stats.rtcp_in >= 2)
    for stop in stops:
        stop()
    stats = b.stats
    assert stats.rtcp_out >= 1 and stats.rtcp_malformed == 0
    assert stats.peer_cumulative_lost == 0 and stats.peer_fraction_lost == 0.0
    assert stats.rtt_ms is not None and 0.0 <= stats.rtt_ms < 100.0
    a.close()
    b.close()


async def test_rtcp_goes_to_the_odd_port_and_bye_on_hangup(allocator: PortAllocator) -> None:
    clock = MediaClock(FAST_MS)
    # Listeners on a caller's RTP port and the port above it, as SDP implies for RTCP.
    async with raw_pair() as (rtp_peer, rtcp_peer):
        leg = await RtpLeg.open(
            clock,
            bind_host=HOST,
            allocator=allocator,
            remote=(HOST, rtp_peer.port),
            rtcp_interval_s=0.1,
        )
        collect(leg)
        stop = pump(clock, leg, silence(160))
        await until(lambda: len(rtcp_peer.received) >= 1)
        stop()
        first = parse_compound(rtcp_peer.received[0][0])
        assert [sr.ssrc for sr in first.sender_reports] == [leg.ssrc]
        await leg.hangup("agent_hangup")
        await until(lambda: any(parse_compound(d).bye for d, _ in rtcp_peer.received))


async def test_hangup_ends_events_and_releases_the_ports(allocator: PortAllocator) -> None:
    clock = MediaClock(FAST_MS)
    ended: list[str] = []
    leg = await RtpLeg.open(clock, bind_host=HOST, allocator=allocator, on_end=ended.append)
    port = leg.local_port
    rx = collect(leg)
    await asyncio.sleep(0.02)
    await leg.hangup("agent_hangup")
    await leg.hangup("again")
    leg.close()
    assert rx.task is not None
    await asyncio.wait_for(rx.task, 1.0)
    assert rx.ended == LegEnded("agent_hangup")
    assert ended == ["agent_hangup"]
    assert not allocator.is_allocated(port)
    leg.send_frame(Frame(np.zeros(160, np.int16), None, False))  # a no-op now
    # The port pair is free for the next call.
    again = await RtpLeg.open(clock, bind_host=HOST, rtp_port=port)
    assert again.local_port == port
    again.close()


async def test_a_new_ssrc_mid_call_keeps_audio_flowing(allocator: PortAllocator) -> None:
    clock = MediaClock(FAST_MS)
    async with raw_peer() as caller:
        leg = await RtpLeg.open(clock, bind_host=HOST, allocator=allocator)
        rx = collect(leg)
        for i in range(6):
            ssrc, seq = (1, 100 + i) if i < 3 else (2, 9000 + i)
            packet = rtp(seq, 160 * i, ssrc=ssrc, payload=b"\x90" * 160)
            caller.send(packet.serialize(), leg.local_port)
            await asyncio.sleep(0.003)
        await until(lambda: len(rx.audio) >= 6)
        assert leg.stats.ssrc_changes == 1 and leg.stats.lost == 0
        leg.close()
