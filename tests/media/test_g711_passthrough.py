"""G.711 passthrough on the RTP side: payloads handed on undecoded (ordered, re-framed,
losses filled), frames of the model's G.711 sent untouched, the other law converted, and
the playout queue holding codes with pre-roll, underrun fades and exact accounting."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from telephony_agent.audio.clock import MediaClock
from telephony_agent.audio.g711 import (
    SILENCE_CODE,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)
from telephony_agent.audio.playout import Frame, PlayoutBuffer
from telephony_agent.media.leg import AudioIn
from telephony_agent.media.rtp import PortAllocator, RtpLeg
from telephony_agent.media.rtp.codecs import make_codec
from telephony_agent.media.rtp.packetizer import Packetizer
from telephony_agent.media.rtp.passthrough import ReceivedPayload
from telephony_agent.media.rtp.receiver import InboundStream, ReceivedAudio, ReceivedItem
from tests.media.rtp_support import rtp, sine
from tests.media.test_rtp_leg import HOST, raw_pair, until


def payload(k: int, size: int = 160) -> bytes:
    """Distinct codes per packet (never the silence code), so order and fill are visible."""
    return bytes((0x10 + (k * 7 + i) % 0xE0) for i in range(size))


def payloads(items: list[ReceivedItem]) -> list[ReceivedPayload]:
    return [item for item in items if isinstance(item, ReceivedPayload)]


def raw_stream(codec: str = "PCMU") -> InboundStream:
    s = InboundStream(make_codec(codec), 0 if codec == "PCMU" else 8)
    assert s.deliver_payloads()
    return s


def test_payloads_are_handed_on_as_received_in_order() -> None:
    s = raw_stream()
    out: list[ReceivedItem] = []
    for k in (0, 2, 1, 3):  # one reordered pair
        out += s.push(rtp(100 + k, 8000 + 160 * k, payload=payload(k)), 0.0)
    got = payloads(out)
    assert [p.payload for p in got] == [payload(k) for k in range(4)]
    assert all(p.law == "pcmu" and not p.concealed for p in got)
    assert not any(isinstance(item, ReceivedAudio) for item in out)


def test_longer_packets_are_cut_into_20_ms_frames_without_decoding() -> None:
    s = raw_stream("PCMA")
    data = payload(0, 400) + payload(1, 80)  # 50 ms then 10 ms: six 20 ms frames needed
    out = s.push(rtp(1, 0, pt=8, payload=data[:400]), 0.0)
    out += s.push(rtp(2, 400, pt=8, payload=data[400:]), 0.0)
    got = payloads(out)
    assert [p.payload for p in got] == [data[i : i + 160] for i in (0, 160, 320)]
    assert all(p.law == "pcma" for p in got)
    flushed = payloads(s.flush(1.0))
    assert flushed == []  # nothing left: 480 bytes were three whole frames


def test_a_lost_packet_fades_the_last_frame_then_fills_silence() -> None:
    s = raw_stream()
    loud = ulaw_encode(np.full(160, 12000, dtype=np.int16)).tobytes()
    out = s.push(rtp(1, 0, payload=loud), 0.0)
    # Packets 2 and 3 are lost; 4 arrives after the reorder window gave up on them.
    out += s.push(rtp(4, 480, payload=payload(4)), 0.0)
    out += s.poll(1.0)
    got = payloads(out)
    assert [p.concealed for p in got] == [False, True, True, False]
    fade = ulaw_decode(got[1].payload).astype(np.int32)
    assert fade[0] > 10000 and abs(fade[-1]) < 200 and np.all(np.diff(fade) <= 64)
    assert got[2].payload == bytes([SILENCE_CODE["pcmu"]]) * 160
    assert got[3].payload == payload(4)


def test_a_codec_that_is_not_g711_is_decoded_as_before() -> None:
    s = InboundStream(make_codec("G722"), 9)
    assert not s.deliver_payloads()
    assert s.passthrough_law is None


def test_packetizer_sends_its_own_law_untouched_and_converts_the_other() -> None:
    pcmu = Packetizer(make_codec("PCMU"), 0)
    data = payload(3)
    sent = pcmu.packetize(Frame(None, "a", True, payload=data, law="pcmu"))
    assert sent is not None and sent[12:] == data
    pcma = Packetizer(make_codec("PCMA"), 8)
    converted = pcma.packetize(Frame(None, "a", True, payload=data, law="pcmu"))
    assert converted is not None
    assert converted[12:] == alaw_encode(ulaw_decode(data)).tobytes()


def test_a_passthrough_frame_decodes_only_when_read() -> None:
    data = payload(5)
    frame = Frame(None, "a", True, payload=data, law="pcmu")
    assert frame.payload == data
    np.testing.assert_array_equal(frame.pcm, ulaw_decode(data))
    with pytest.raises(ValueError):
        Frame(None, None, False)
    event = AudioIn(None, 1.5, payload=data, law="pcma")
    np.testing.assert_array_equal(event.pcm, alaw_decode(data))
    assert event.received_at == 1.5


# ---------------------------------------------------------------- the playout queue


def test_g711_queue_holds_codes_with_preroll_and_exact_accounting() -> None:
    buffer = PlayoutBuffer(8000, preroll_ms=40, law="pcmu")
    first = payload(1, 200)
    buffer.push(np.frombuffer(first, dtype=np.uint8), "a")  # 25 ms: under the pre-roll
    held = buffer.pop_frame()
    assert not held.speech and held.payload == bytes([0xFF]) * 160
    buffer.push(np.frombuffer(payload(2, 200), dtype=np.uint8), "a")  # 50 ms queued
    frames = [buffer.pop_frame() for _ in range(2)]
    assert frames[0].payload == first[:160] and frames[0].law == "pcmu"
    assert frames[1].payload == (first + payload(2, 200))[160:320]
    assert buffer.played_ms("a") == 40 and buffer.received_ms("a") == 50  # 8 bytes per ms
    buffer.mark_complete()
    last = buffer.pop_frame()  # 10 ms of speech, then encoded silence: the item ended
    assert last.payload == (first + payload(2, 200))[320:] + bytes([0xFF]) * 80
    assert buffer.played_ms("a") == 50 and buffer.underruns == 0


def test_g711_underrun_fades_out_and_in_touching_only_the_ramp() -> None:
    buffer = PlayoutBuffer(8000, preroll_ms=20, law="pcma")
    loud = alaw_encode(sine(8000, 0.04, level=16000)).tobytes()
    buffer.push(np.frombuffer(loud[:160], dtype=np.uint8), "a")
    out = buffer.pop_frame()  # the queue runs dry: the last 4 ms fade out
    assert out.payload is not None
    assert out.payload[:120] == loud[:120]  # untouched before the ramp
    tail = alaw_decode(out.payload[-8:]).astype(np.int32)
    assert np.abs(tail).max() < np.abs(alaw_decode(loud[152:160]).astype(np.int32)).max()
    buffer.push(np.frombuffer(loud[160:], dtype=np.uint8), "a")
    buffer.mark_complete()
    resumed = buffer.pop_frame()
    assert resumed.payload is not None
    assert resumed.payload[32:] == loud[192:320]  # only the first 4 ms ramp in
    assert abs(int(alaw_decode(resumed.payload[:1])[0])) < 200
    assert buffer.underruns == 1


# ---------------------------------------------------------------- the RTP leg


async def test_rtp_leg_hands_over_the_callers_bytes_and_sends_the_models(
    allocator: PortAllocator,
) -> None:
    clock = MediaClock()
    async with raw_pair() as (peer, _):
        leg = await RtpLeg.open(
            clock, codec="PCMU", payload_type=0, bind_host=HOST, allocator=allocator
        )
        assert leg.deliver_g711()
        received: list[AudioIn] = []

        async def read() -> None:
            async for event in leg.events():
                if isinstance(event, AudioIn):
                    received.append(event)

        reader = asyncio.create_task(read())
        sent = [payload(k) for k in range(5)]
        for k, data in enumerate(sent):
            peer.send(rtp(500 + k, 1600 * k, payload=data).serialize(), leg.local_port)
        await until(lambda: len(received) >= 5)
        assert [e.payload for e in received[:5]] == sent
        assert all(e.law == "pcmu" and e.received_at > 0 for e in received[:5])
        # The leg latched to the peer; the model's bytes go back untouched.
        model = payload(9)
        leg.send_frame(Frame(None, "item", True, payload=model, law="pcmu"))
        await until(lambda: bool(peer.rtp()))
        assert peer.rtp()[-1].payload == model
        leg.close("done")
        await reader
        clock.stop()


@pytest.fixture
def allocator() -> PortAllocator:
    return PortAllocator(43000, 43999)
