"""WebRtcLeg against a real aiortc peer on loopback, standing in for the browser.

The peer offers like a page does: a microphone track, a "dtmf" and an "events"
data channel, all candidates gathered (127.0.0.1 included) before offering.
Audio is the bundled speech sample, so correlation proves that the samples
arrived in order, not merely that packets did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from importlib.resources import files
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket
from numpy.typing import NDArray

from telephony_agent.audio.analysis import best_lag_correlation
from telephony_agent.audio.clock import MediaClock
from telephony_agent.audio.playout import Frame
from telephony_agent.media.audiofile import decode_audio_file
from telephony_agent.media.leg import AudioIn, DtmfIn, LegEnded, LegEvent
from telephony_agent.media.rtp.codecs import OpusCodec
from telephony_agent.media.webrtc import IceServer, WebRtcLeg, WebRtcOfferError
from telephony_agent.media.webrtc.loopback import is_loopback_candidate, offer_loopback_candidates
from telephony_agent.media.webrtc.offer import check_offer
from telephony_agent.media.webrtc.tracks import LoopingPcmTrack

RATE = 48000
FRAME = 960
SAMPLE = Path(str(files("telephony_agent") / "samples" / "book_flight.wav"))


@pytest.fixture(scope="module")
def speech() -> NDArray[np.int16]:
    """The bundled sample at 48 kHz, whole 20 ms frames."""
    pcm = decode_audio_file(SAMPLE, RATE)
    return pcm[: pcm.size - pcm.size % FRAME]


class Browser:
    """A plain aiortc peer that offers the way the demo page does."""

    def __init__(self, pcm: NDArray[np.int16]) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(LoopingPcmTrack(pcm))
        self.dtmf = self.pc.createDataChannel("dtmf")
        self.events = self.pc.createDataChannel("events")
        self.messages: list[str] = []
        self.heard: list[NDArray[np.int16]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.events.on("message", self.messages.append)
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.create_task(self._listen(track)))

    async def _listen(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.AudioFrame)
                channels = frame.layout.nb_channels
                left = frame.to_ndarray().reshape(-1, channels)[:, 0]
                self.heard.append(np.asarray(left, dtype=np.int16))

    async def offer(self) -> str:
        offer_loopback_candidates(self.pc)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp: str = self.pc.localDescription.sdp
        return sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def until(predicate: Callable[[], bool], within_s: float = 5.0) -> None:
    """Poll a condition that aiortc's callbacks make true (there is no event to await)."""
    for _ in range(int(within_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not met within {within_s} s")


class Collector:
    """Drains a leg's events() in the background, as the Call does."""

    def __init__(self, leg: WebRtcLeg) -> None:
        self.events: list[LegEvent] = []
        self.task = asyncio.create_task(self._run(leg))

    async def _run(self, leg: WebRtcLeg) -> None:
        async for event in leg.events():
            self.events.append(event)

    def audio(self) -> list[AudioIn]:
        return [e for e in self.events if isinstance(e, AudioIn)]

    def of_type(self, kind: type[DtmfIn] | type[LegEnded]) -> list[LegEvent]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
async def call(
    speech: NDArray[np.int16],
) -> AsyncIterator[tuple[Browser, WebRtcLeg, Collector, MediaClock]]:
    """A connected call: the browser's offer answered by WebRtcLeg, both channels open."""
    clock = MediaClock()
    browser = Browser(speech)
    leg = await WebRtcLeg.answer(await browser.offer(), clock=clock, allow_loopback=True)
    collector = Collector(leg)
    await browser.accept(leg.answer_sdp)
    await until(lambda: leg.connected and browser.events.readyState == "open")
    await until(lambda: leg.stats.frames_in > 0)
    try:
        yield browser, leg, collector, clock
    finally:
        await browser.close()
        await leg.close()
        await asyncio.wait_for(collector.task, 5.0)


async def test_browser_audio_arrives_as_20ms_frames_that_match_what_was_sent(
    call: tuple[Browser, WebRtcLeg, Collector, MediaClock], speech: NDArray[np.int16]
) -> None:
    _, leg, collector, _ = call
    await until(lambda: len(collector.audio()) >= 75)  # 1.5 s
    frames = collector.audio()[:75]
    assert {f.pcm.shape for f in frames} == {(FRAME,)}
    assert {f.pcm.dtype for f in frames} == {np.dtype(np.int16)}
    assert all(f.received_at > 0 for f in frames)
    received = np.concatenate([f.pcm for f in frames])
    correlation, lag = best_lag_correlation(speech[: received.size], received, RATE // 4)
    assert correlation >= 0.8, (correlation, lag)
    assert leg.stats.idle_frames == 0
    assert leg.sample_rate == RATE and leg.codec == "opus" and leg.frame_samples == FRAME


async def test_frames_sent_on_clock_ticks_reach_the_browser(
    call: tuple[Browser, WebRtcLeg, Collector, MediaClock], speech: NDArray[np.int16]
) -> None:
    browser, leg, _, clock = call
    frames = speech.reshape(-1, FRAME)
    sent: list[NDArray[np.int16]] = []

    def on_tick(tick: int) -> None:
        del tick
        pcm = frames[len(sent) % len(frames)]
        sent.append(pcm)
        leg.send_frame(Frame(pcm, "item", True))

    heard_before = len(browser.heard)
    subscription = clock.subscribe(on_tick)
    try:
        await until(lambda: len(browser.heard) - heard_before >= 75)
    finally:
        subscription.cancel()
    heard = np.concatenate(browser.heard[heard_before : heard_before + 75])
    correlation, lag = best_lag_correlation(np.concatenate(sent), heard, RATE // 4)
    assert correlation >= 0.8, (correlation, lag)
    assert leg.stats.frames_out == len(sent)
    assert leg.stats.frames_dropped == 0


async def test_dtmf_channel_messages_become_digits_and_bad_ones_are_counted(
    call: tuple[Browser, WebRtcLeg, Collector, MediaClock],
) -> None:
    browser, leg, collector, _ = call
    browser.dtmf.send("5")
    browser.dtmf.send(json.dumps({"digit": "#", "duration_ms": 250}))
    browser.dtmf.send("not a digit")
    browser.dtmf.send(json.dumps({"digit": "x"}))
    browser.dtmf.send("9")
    await until(lambda: len(collector.of_type(DtmfIn)) == 3)
    assert collector.of_type(DtmfIn) == [DtmfIn("5", 100), DtmfIn("#", 250), DtmfIn("9", 100)]
    assert leg.stats.dtmf_invalid == 2
    assert leg.send_dtmf("123") is False


async def test_send_event_arrives_as_json_on_the_events_channel(
    call: tuple[Browser, WebRtcLeg, Collector, MediaClock],
) -> None:
    browser, leg, _, _ = call
    leg.send_event({"type": "transcript", "role": "agent", "text": "Hello there"})
    leg.send_event({"type": "latency", "ms": 412.5})
    await until(lambda: len(browser.messages) == 2)
    assert [json.loads(m) for m in browser.messages] == [
        {"type": "transcript", "role": "agent", "text": "Hello there"},
        {"type": "latency", "ms": 412.5},
    ]
    assert leg.stats.events_sent == 2


async def test_hangup_tells_the_page_why_then_ends_the_leg(
    call: tuple[Browser, WebRtcLeg, Collector, MediaClock],
) -> None:
    browser, leg, collector, _ = call
    await leg.hangup("agent_done")
    await until(lambda: bool(browser.messages))
    assert json.loads(browser.messages[-1]) == {"type": "hangup", "reason": "agent_done"}
    await asyncio.wait_for(collector.task, 5.0)
    assert collector.events[-1] == LegEnded("agent_done")
    await until(lambda: browser.pc.connectionState in ("closed", "failed"), within_s=10.0)
    leg.send_event({"type": "late"})  # dropped, not raised
    leg.send_frame(Frame(np.zeros(FRAME, dtype=np.int16), None, False))


async def test_browser_closing_ends_events_with_leg_ended(
    call: tuple[Browser, WebRtcLeg, Collector, MediaClock],
) -> None:
    browser, leg, collector, _ = call
    await browser.close()
    await asyncio.wait_for(collector.task, 5.0)
    ended = collector.of_type(LegEnded)
    assert ended == [LegEnded("peer_closed")]
    assert collector.events[-1] is ended[0]
    assert leg.ended and leg.end_reason == "peer_closed"


async def test_close_is_idempotent_and_ends_events_with_closed(
    call: tuple[Browser, WebRtcLeg, Collector, MediaClock],
) -> None:
    _, leg, collector, _ = call
    await leg.close()
    await leg.close()
    await asyncio.wait_for(collector.task, 5.0)
    assert collector.of_type(LegEnded) == [LegEnded("closed")]
    leg.send_event({"type": "after close"})
    assert leg.stats.events_dropped == 1


async def test_loopback_candidate_is_offered_only_when_allowed(
    speech: NDArray[np.int16],
) -> None:
    clock = MediaClock()
    for allow in (True, False):
        browser = Browser(speech)
        leg = await WebRtcLeg.answer(await browser.offer(), clock=clock, allow_loopback=allow)
        try:
            candidates = [
                line for line in leg.answer_sdp.splitlines() if line.startswith("a=candidate:")
            ]
            assert any(is_loopback_candidate(c) for c in candidates) is allow
            assert "a=end-of-candidates" in leg.answer_sdp  # gathered before answering
        finally:
            await leg.close()
            await browser.close()


async def test_answer_negotiates_opus_only_even_when_the_page_prefers_pcmu(
    speech: NDArray[np.int16],
) -> None:
    browser = Browser(speech)
    codecs = RTCRtpSender.getCapabilities("audio").codecs
    pcmu_first = sorted(codecs, key=lambda c: c.mimeType != "audio/PCMU")
    browser.pc.getTransceivers()[0].setCodecPreferences(pcmu_first)
    offer = await browser.offer()
    assert offer.index("PCMU/8000") < offer.index("opus/48000")
    leg = await WebRtcLeg.answer(offer, clock=MediaClock(), allow_loopback=True)
    try:
        audio = leg.answer_sdp.split("m=audio", 1)[1].split("m=", 1)[0]
        assert "opus/48000/2" in audio
        assert "PCMU" not in audio and "G722" not in audio
    finally:
        await leg.close()
        await browser.close()


async def _offer_of(build: Callable[[RTCPeerConnection], None]) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        build(pc)
        await pc.setLocalDescription(await pc.createOffer())
        sdp: str = pc.localDescription.sdp
        return sdp
    finally:
        await pc.close()


def _pcmu_only(pc: RTCPeerConnection) -> None:
    pcmu = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.name == "PCMU"]
    pc.addTransceiver("audio").setCodecPreferences(pcmu)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda pc: pc.addTransceiver("video"), "no audio m-line (it offers video)"),
        (_pcmu_only, "Opus 48000 is required (offered: PCMU/8000)"),
    ],
    ids=["video_only", "no_opus"],
)
async def test_offers_from_a_real_peer_without_usable_audio_are_refused(
    build: Callable[[RTCPeerConnection], None], message: str
) -> None:
    offer = await _offer_of(build)
    with pytest.raises(WebRtcOfferError, match=message.replace("(", r"\(").replace(")", r"\)")):
        await WebRtcLeg.answer(offer, clock=MediaClock())


@pytest.mark.parametrize(
    ("offer", "message"),
    [
        ("hello, I am not SDP", "not SDP: it must start with a 'v=0' line"),
        ("", "not SDP"),
        ("v=0\r\nthis line is broken\r\n", "not parseable SDP: line 2"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no media"),
    ],
    ids=["garbage", "empty", "broken_line", "no_media"],
)
async def test_garbage_offers_are_refused_with_a_clear_message(offer: str, message: str) -> None:
    with pytest.raises(WebRtcOfferError, match=message):
        await WebRtcLeg.answer(offer, clock=MediaClock())


async def test_offer_aiortc_rejects_is_reported_as_an_offer_error(
    speech: NDArray[np.int16],
) -> None:
    browser = Browser(speech)
    try:
        offer = await browser.offer()
    finally:
        await browser.close()
    without_ice = "\r\n".join(
        line for line in offer.splitlines() if not line.startswith(("a=ice-ufrag", "a=ice-pwd"))
    )
    with pytest.raises(WebRtcOfferError, match="the offer was rejected"):
        await WebRtcLeg.answer(without_ice, clock=MediaClock())


async def test_gathering_slower_than_the_timeout_raises_timeout_error(
    speech: NDArray[np.int16],
) -> None:
    browser = Browser(speech)
    try:
        offer = await browser.offer()
    finally:
        await browser.close()
    # Nothing answers STUN on the discard port, so gathering waits for aioice's own timeout.
    silent_stun = [IceServer(urls=("stun:127.0.0.1:9",))]
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.3 s"):
        await WebRtcLeg.answer(
            offer, clock=MediaClock(), ice_servers=silent_stun, ice_timeout_s=0.3
        )


# ---------------------------------------------------------------------- the receive path


def _opus_packets(pcm: NDArray[np.int16], payload_type: int) -> list[RtpPacket]:
    """The page's RTP for `pcm`: one Opus packet per 20 ms, sequence numbers from 1."""
    codec = OpusCodec()
    return [
        RtpPacket(
            payload_type=payload_type,
            sequence_number=seq,
            timestamp=seq * FRAME,
            ssrc=0x5EED,
            payload=codec.encode(frame),
        )
        for seq, frame in enumerate(pcm.reshape(-1, FRAME), start=1)
    ]


@pytest.fixture
async def unconnected_leg(
    speech: NDArray[np.int16],
) -> AsyncIterator[tuple[WebRtcLeg, RTCRtpReceiver, Collector]]:
    """An answered leg whose page never connects; the test hands it RTP as aiortc would."""
    browser = Browser(speech)
    leg = await WebRtcLeg.answer(await browser.offer(), clock=MediaClock(), allow_loopback=True)
    collector = Collector(leg)
    receiver = leg._pc.getTransceivers()[0].receiver
    try:
        yield leg, receiver, collector
    finally:
        await leg.close()
        await browser.close()
        await asyncio.wait_for(collector.task, 5.0)


async def _deliver(receiver: RTCRtpReceiver, packet: RtpPacket) -> None:
    """What RTCDtlsTransport does with each decrypted packet routed to this receiver."""
    await receiver._handle_rtp_packet(packet, arrival_time_ms=0)


async def test_packets_become_frames_at_once_and_a_lost_one_is_concealed_without_a_stall(
    unconnected_leg: tuple[WebRtcLeg, RTCRtpReceiver, Collector], speech: NDArray[np.int16]
) -> None:
    leg, receiver, collector = unconnected_leg
    pt = check_offer(leg.answer_sdp).opus_payload_type
    packets = _opus_packets(speech[: 20 * FRAME], pt)
    for packet in packets[:5]:
        await _deliver(receiver, packet)
    await asyncio.sleep(0)
    # In order: every packet is a frame straight away (aiortc's receiver held back four).
    assert len(collector.audio()) == 5
    # Packet 6 is lost; 7..10 arrive. The reorder window gives up on 6 after three packets
    # (aiortc's jitter buffer would stall until sixteen had arrived).
    for packet in packets[6:10]:
        await _deliver(receiver, packet)
    await asyncio.sleep(0)
    assert len(collector.audio()) == 10
    # Reordered: 12 before 11 still comes out as 11, 12.
    await _deliver(receiver, packets[11])
    await _deliver(receiver, packets[10])
    await asyncio.sleep(0)
    assert len(collector.audio()) == 12
    stats = leg.stats
    assert (stats.packets_in, stats.lost, stats.concealed_frames) == (11, 1, 1)
    assert stats.frames_in == 12 and stats.idle_frames == 0
    received = np.concatenate([frame.pcm for frame in collector.audio()])
    correlation, _ = best_lag_correlation(speech[: received.size], received, FRAME)
    assert correlation >= 0.8


async def test_undecodable_payloads_and_foreign_payload_types_are_counted_not_raised(
    unconnected_leg: tuple[WebRtcLeg, RTCRtpReceiver, Collector], speech: NDArray[np.int16]
) -> None:
    leg, receiver, collector = unconnected_leg
    pt = check_offer(leg.answer_sdp).opus_payload_type
    good = _opus_packets(speech[: 3 * FRAME], pt)
    await _deliver(receiver, good[0])
    garbage = RtpPacket(payload_type=pt, sequence_number=2, timestamp=2 * FRAME, ssrc=0x5EED)
    garbage.payload = b"\xff" * 7
    await _deliver(receiver, garbage)
    other = RtpPacket(payload_type=(pt + 1) % 128, sequence_number=3, timestamp=0, ssrc=0x5EED)
    other.payload = b"\x00" * 20
    await _deliver(receiver, other)
    await _deliver(receiver, good[2])
    await asyncio.sleep(0)
    stats = leg.stats
    assert stats.decode_errors == 1
    assert len(collector.audio()) == 3  # the undecodable packet became 20 ms of silence
    assert not leg.ended


async def test_rtcp_receiver_reports_about_the_pages_stream_reach_the_page(
    speech: NDArray[np.int16], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(WebRtcLeg, "rtcp_interval_s", 0.2)
    browser = Browser(speech)
    leg = await WebRtcLeg.answer(await browser.offer(), clock=MediaClock(), allow_loopback=True)
    collector = Collector(leg)
    try:
        await browser.accept(leg.answer_sdp)
        sender = browser.pc.getSenders()[0]

        async def remote_inbound() -> list[object]:
            report = await sender.getStats()
            return [s for s in report.values() if s.type == "remote-inbound-rtp"]

        for _ in range(500):
            found = await remote_inbound()
            if found:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the page never got a receiver report about its stream")
        assert leg.stats.packets_in > 0
        assert getattr(found[0], "packetsLost", None) == 0
    finally:
        await browser.close()
        await leg.close()
        await asyncio.wait_for(collector.task, 5.0)
