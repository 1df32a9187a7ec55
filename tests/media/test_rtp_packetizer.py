"""Outbound packetiser: numbering and timing continuity, marker bits, silence, DTMF, ptime."""

from __future__ import annotations

import numpy as np
import pytest
from aiortc.rtp import RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony_agent.audio.playout import Frame
from telephony_agent.media.rtp.codecs import make_codec
from telephony_agent.media.rtp.dtmf import TelephoneEvent
from telephony_agent.media.rtp.packetizer import Packetizer


def frame(samples: int = 160, *, speech: bool = True, value: int = 1000) -> Frame:
    pcm = np.full(samples, value if speech else 0, dtype=np.int16)
    return Frame(pcm, "item" if speech else None, speech)


def packetizer(codec: str = "PCMU", pt: int = 0, **kwargs: int | None) -> Packetizer:
    return Packetizer(make_codec(codec), pt, **kwargs)  # type: ignore[arg-type]


def send(p: Packetizer, frames: list[Frame]) -> list[RtpPacket]:
    out = []
    for f in frames:
        data = p.packetize(f)
        if data is not None:
            out.append(RtpPacket.parse(data))
    return out


def test_sequence_and_timestamp_run_on_across_their_wraps() -> None:
    p = packetizer(ssrc=42, sequence=65530, timestamp=0xFFFF_FFFF - 479)
    packets = send(p, [frame() for _ in range(20)])
    seqs = [pk.sequence_number for pk in packets]
    stamps = [pk.timestamp for pk in packets]
    assert seqs == [(65530 + i) & 0xFFFF for i in range(20)]
    assert stamps == [(0xFFFF_FFFF - 479 + 160 * i) & 0xFFFF_FFFF for i in range(20)]
    assert {pk.ssrc for pk in packets} == {42}
    assert {pk.payload_type for pk in packets} == {0}
    assert (p.packets, p.octets) == (20, 20 * 160)


def test_random_initial_numbering_per_stream() -> None:
    a, b = packetizer(), packetizer()
    assert (a.ssrc, a.sequence, a.timestamp) != (b.ssrc, b.sequence, b.timestamp)


def test_silence_is_still_sent_encoded() -> None:
    p = packetizer()
    packets = send(p, [frame(speech=False) for _ in range(5)])
    assert len(packets) == 5
    assert all(pk.payload == b"\xff" * 160 for pk in packets)  # μ-law zero


def test_marker_on_the_first_packet_and_each_talk_spurt() -> None:
    p = packetizer()
    pattern = [False, False, True, True, False, True, True, True, False]
    packets = send(p, [frame(speech=s) for s in pattern])
    assert [pk.marker for pk in packets] == [1, 0, 1, 0, 0, 1, 0, 0, 0]


def test_marker_after_a_pause_and_after_a_codec_change() -> None:
    p = packetizer(sequence=10)
    send(p, [frame(), frame()])
    p.skip()
    p.skip()
    (after_hold,) = send(p, [frame()])
    assert after_hold.marker == 1
    assert after_hold.sequence_number == 12  # nothing was sent while paused
    p.set_format(make_codec("PCMA"), 8, None)
    (after_change,) = send(p, [frame()])
    assert after_change.marker == 1 and after_change.payload_type == 8
    assert after_change.timestamp == after_hold.timestamp + 160


def test_skip_moves_the_timestamp_on() -> None:
    p = packetizer(timestamp=1000)
    send(p, [frame()])
    p.skip()
    (pk,) = send(p, [frame()])
    assert pk.timestamp == 1320


@pytest.mark.parametrize(("codec", "step", "payload"), [("G722", 160, 160), ("opus", 960, None)])
def test_timestamp_step_of_the_codec_clock(codec: str, step: int, payload: int | None) -> None:
    c = make_codec(codec)
    p = Packetizer(c, 9 if codec == "G722" else 111, timestamp=0)
    packets = send(p, [frame(c.frame_samples) for _ in range(3)])
    assert [pk.timestamp for pk in packets] == [0, step, 2 * step]
    if payload is not None:
        assert all(len(pk.payload) == payload for pk in packets)


def test_dtmf_replaces_audio_and_keeps_numbering_continuous() -> None:
    p = packetizer(dtmf_payload_type=101, sequence=100, timestamp=0)
    assert p.send_dtmf("5")
    packets = send(p, [frame() for _ in range(10)])
    assert [pk.sequence_number for pk in packets] == list(range(100, 110))
    assert [pk.payload_type for pk in packets] == [101] * 7 + [0] * 3
    events = [TelephoneEvent.parse(pk.payload) for pk in packets[:7]]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {pk.timestamp for pk in packets[:7]} == {0}
    assert packets[0].marker == 1
    assert [pk.timestamp for pk in packets[7:]] == [7 * 160, 8 * 160, 9 * 160]


def test_dtmf_refused_without_telephone_event_or_for_bad_digits() -> None:
    assert not packetizer().send_dtmf("1")
    p = packetizer(dtmf_payload_type=101)
    assert not p.send_dtmf("1x")
    assert p.send_dtmf("*#a")


def test_ptime_40_for_g711() -> None:
    p = packetizer(ptime_ms=40, timestamp=0, sequence=0)
    out = [p.packetize(frame(value=100 * i)) for i in range(6)]
    assert [data is None for data in out] == [True, False] * 3
    packets = [RtpPacket.parse(d) for d in out if d is not None]
    assert [pk.timestamp for pk in packets] == [0, 320, 640]
    assert [pk.sequence_number for pk in packets] == [0, 1, 2]
    assert all(len(pk.payload) == 320 for pk in packets)


def test_ptime_limits() -> None:
    with pytest.raises(ValueError):
        packetizer("opus", 111, ptime_ms=40)
    with pytest.raises(ValueError):
        packetizer(ptime_ms=30)
    with pytest.raises(ValueError):
        packetizer(pt=128)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=60))
def test_markers_exactly_at_talk_spurt_starts(speech: list[bool]) -> None:
    p = packetizer()
    packets = send(p, [frame(speech=s) for s in speech])
    expected = [i == 0 or (s and not speech[i - 1]) for i, s in enumerate(speech)]
    assert [bool(pk.marker) for pk in packets] == expected
    first = packets[0]
    for i, pk in enumerate(packets):
        assert pk.sequence_number == (first.sequence_number + i) & 0xFFFF
        assert pk.timestamp == (first.timestamp + 160 * i) & 0xFFFF_FFFF


@pytest.mark.parametrize("codec,pt", [("PCMU", 0), ("PCMA", 8), ("G722", 9)])
def test_packets_are_byte_for_byte_what_an_rtp_library_serialises(codec: str, pt: int) -> None:
    p = packetizer(codec, pt, ssrc=0xDEADBEEF, sequence=65535, timestamp=0xFFFFFF00)
    samples = make_codec(codec).sample_rate // 50
    for i, f in enumerate([frame(samples), frame(samples), frame(samples, speech=False)]):
        seq, ts = p.sequence, p.timestamp
        data = p.packetize(f)
        assert data is not None
        want = RtpPacket(
            payload_type=pt,
            marker=1 if i == 0 else 0,
            sequence_number=seq,
            timestamp=ts,
            ssrc=0xDEADBEEF,
            payload=data[12:],
        ).serialize()
        assert data == want
