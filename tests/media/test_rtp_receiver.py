"""Inbound stream: reorder window, duplicates, late packets, loss concealment, SSRC and
sequence/timestamp wrap, wrong payload types, re-framing of longer packets, DTMF."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony_agent.audio.g711 import ulaw_decode
from telephony_agent.media.opus_native import native_opus_available
from telephony_agent.media.rtp.codecs import OpusCodec, make_codec
from telephony_agent.media.rtp.dtmf import DtmfDigit, TelephoneEvent
from telephony_agent.media.rtp.receiver import InboundStream, ReceivedAudio, ReceivedItem
from telephony_agent.media.rtp.wire import RtpPacket
from tests.media.rtp_support import SSRC, frames_of, rtp, speech

CODE_BASE = 0x20


def marked(k: int) -> bytes:
    """A PCMU payload whose every sample decodes to a value identifying packet `k`."""
    return bytes([CODE_BASE + k % 90]) * 160


def value_of(k: int) -> int:
    return int(ulaw_decode(bytes([CODE_BASE + k % 90]))[0])


def packet(k: int, *, seq0: int = 1000, ts0: int = 50_000) -> RtpPacket:
    return rtp(seq0 + k, ts0 + 160 * k, payload=marked(k))


def stream(
    *, max_held: int = 3, max_hold_s: float = 0.06, max_conceal_ms: int = 200
) -> InboundStream:
    return InboundStream(
        make_codec("PCMU"),
        0,
        dtmf_payload_type=101,
        max_held=max_held,
        max_hold_s=max_hold_s,
        max_conceal_ms=max_conceal_ms,
    )


def push(
    s: InboundStream, k: int, now: float = 0.0, *, seq0: int = 1000, ts0: int = 50_000
) -> list[ReceivedItem]:
    return s.push(packet(k, seq0=seq0, ts0=ts0), now)


def audio(items: list[ReceivedItem]) -> list[ReceivedAudio]:
    return [item for item in items if isinstance(item, ReceivedAudio)]


def ids(items: list[ReceivedItem]) -> list[int | str]:
    """Packet index of each real frame, 'c' for a concealed one."""
    out: list[int | str] = []
    for frame in audio(items):
        if frame.concealed:
            out.append("c")
        else:
            value = int(frame.pcm[0])
            out.append(next(k for k in range(90) if value_of(k) == value))
    return out


def test_in_order_packets_pass_straight_through() -> None:
    s = stream()
    for k in range(5):
        out = push(s, k)
        assert ids(out) == [k]
        assert audio(out)[0].pcm.size == 160
    assert s.stats.packets_in == 5
    assert s.stats.lost == s.stats.reordered == 0


def test_swapped_packets_are_put_back_in_order() -> None:
    s = stream()
    assert ids(push(s, 0)) == [0]
    assert push(s, 2) == []
    assert ids(push(s, 1)) == [1, 2]
    assert s.stats.reordered == 1
    assert s.stats.lost == 0


def test_duplicates_dropped_whether_played_or_held() -> None:
    s = stream()
    push(s, 0)
    push(s, 0)
    push(s, 2)
    push(s, 2)
    assert ids(push(s, 1)) == [1, 2]
    assert s.stats.duplicates == 2


def test_window_full_declares_loss_and_a_late_packet_is_dropped() -> None:
    s = stream(max_held=3)
    push(s, 0)
    assert push(s, 2) == [] and push(s, 3) == [] and push(s, 4) == []
    out = push(s, 5)  # a fourth held packet: give up on 1
    assert ids(out) == ["c", 2, 3, 4, 5]
    assert push(s, 1) == []
    assert (s.stats.lost, s.stats.late, s.stats.concealed_frames) == (1, 1, 1)


def test_hole_given_up_after_the_hold_time_on_poll() -> None:
    s = stream(max_hold_s=0.06)
    push(s, 0, now=1.0)
    assert push(s, 2, now=1.02) == []
    assert s.poll(1.07) == []
    assert ids(s.poll(1.081)) == ["c", 2]


def test_concealment_repeats_the_last_frame_faded_then_silence() -> None:
    s = stream()
    push(s, 0)
    out = audio(s.push(packet(4), 0.0))
    out += audio(s.poll(1.0))
    concealed = [f.pcm for f in out if f.concealed]
    assert len(concealed) == 3
    first = concealed[0].astype(np.int32)
    assert first[0] == value_of(0) and abs(first[-1]) <= abs(value_of(0)) // 100 + 1
    assert np.all(np.abs(np.diff(np.abs(first))) <= abs(value_of(0)) // 100 + 2)  # a ramp
    assert not concealed[1].any() and not concealed[2].any()
    assert s.stats.lost == 3


def test_concealment_is_capped() -> None:
    s = stream(max_conceal_ms=200, max_held=0)
    push(s, 0)
    out = push(s, 30)
    assert ids(out) == ["c"] * 10 + [30]
    assert s.stats.lost == 29


def test_sequence_wrap_is_continuous() -> None:
    s = stream()
    got: list[int | str] = []
    for k in range(12):
        got += ids(push(s, k, seq0=65530))
    assert got == list(range(12))
    assert s.stats.lost == 0
    assert s.reception is not None and s.reception.expected == 12


def test_loss_across_the_timestamp_wrap_conceals_the_exact_gap() -> None:
    s = stream(max_held=0)
    ts0 = 0xFFFF_FFFF - 160 * 2 + 1
    push(s, 0, ts0=ts0)
    out = push(s, 4, ts0=ts0)  # timestamps 0, 1, 2 after the wrap were lost
    assert ids(out) == ["c", "c", "c", 4]


def test_ssrc_change_restarts_sequence_state_and_keeps_going() -> None:
    s = stream()
    push(s, 0)
    push(s, 2)  # held when the source changes
    out = s.push(rtp(7, 999, ssrc=SSRC + 1, payload=marked(9)), 0.0)
    assert ids(out) == ["c", 2, 9]
    assert ids(s.push(rtp(8, 1159, ssrc=SSRC + 1, payload=marked(10)), 0.0)) == [10]
    assert s.stats.ssrc_changes == 1
    assert s.ssrc == SSRC + 1


def test_restart_forgets_the_sequence_without_counting_loss() -> None:
    s = stream()
    push(s, 0)
    push(s, 2)
    s.restart()
    assert ids(push(s, 40)) == [40]
    assert (s.stats.lost, s.stats.ssrc_changes, s.stats.late) == (0, 0, 0)


def test_payload_types_not_negotiated_are_dropped_and_counted() -> None:
    s = InboundStream(make_codec("PCMU"), 0)  # no telephone-event negotiated
    assert s.push(rtp(1, 0, pt=8), 0.0) == []
    assert s.push(rtp(2, 0, pt=101, payload=b"\x01\x80\x00\xa0"), 0.0) == []
    assert s.stats.wrong_pt == 2
    assert s.ssrc is None  # a stray payload type does not even start the stream


def test_huge_sequence_jump_needs_a_second_packet_to_confirm() -> None:
    s = stream()
    push(s, 0)
    assert push(s, 5000) == []
    assert s.stats.seq_jumps == 1
    assert push(s, 7000) == []  # not the confirming successor either
    assert s.stats.seq_jumps == 2


def test_confirmed_jump_restarts_without_concealing_the_jump() -> None:
    s = stream()
    push(s, 0)
    push(s, 5000)
    out = push(s, 5001)
    assert [i for i in ids(out) if i == "c"] == []
    assert len(audio(out)) == 1
    assert s.stats.lost == 0


def test_old_renumbered_packets_far_behind_are_not_late() -> None:
    s = stream()
    push(s, 500)
    assert push(s, 0) == []
    assert s.stats.late == 0 and s.stats.seq_jumps == 1


@pytest.mark.parametrize(("ptime", "packets", "frames"), [(30, 2, 3), (40, 1, 2), (60, 3, 9)])
def test_longer_packets_are_cut_into_20_ms_frames(ptime: int, packets: int, frames: int) -> None:
    s = stream()
    samples = 8 * ptime
    out: list[ReceivedItem] = []
    for k in range(packets):
        out += s.push(rtp(k, k * samples, payload=b"\x80" * samples), 0.0)
    assert [f.pcm.size for f in audio(out)] == [160] * frames


def test_30_ms_packets_keep_every_sample_in_order() -> None:
    s = stream()
    out: list[ReceivedItem] = []
    codes = [bytes([CODE_BASE + k]) * 240 for k in range(4)]
    for k, payload in enumerate(codes):
        out += s.push(rtp(k, 240 * k, payload=payload), 0.0)
    joined = np.concatenate([f.pcm for f in audio(out)])
    assert np.array_equal(joined, ulaw_decode(b"".join(codes)))


def test_g722_40_ms_packets() -> None:
    codec = make_codec("G722")
    s = InboundStream(make_codec("G722"), 9)
    payload = codec.encode(np.zeros(320, np.int16)) + codec.encode(np.zeros(320, np.int16))
    out = s.push(rtp(1, 0, pt=9, payload=payload), 0.0)
    assert [f.pcm.size for f in audio(out)] == [320, 320]


def test_dtmf_on_the_same_ssrc_comes_out_in_order_and_once() -> None:
    s = stream()
    out: list[ReceivedItem] = []
    out += push(s, 0)
    ts = 50_000 + 160
    for i, (duration, end) in enumerate([(160, False), (320, True), (320, True), (320, True)]):
        payload = TelephoneEvent(11, end, 10, duration).serialize()
        out += s.push(rtp(1001 + i, ts, pt=101, payload=payload, marker=i == 0), 0.0)
    out += push(s, 5)
    digits = [item for item in out if isinstance(item, DtmfDigit)]
    assert [(d.digit, d.duration_ms) for d in digits] == [("#", 40)]
    assert out.index(digits[0]) == 1
    assert s.stats.dtmf_in == 1


def test_flush_hands_on_held_packets_and_a_partial_frame() -> None:
    s = stream()
    s.push(rtp(0, 0, payload=b"\x80" * 240), 0.0)
    s.push(rtp(2, 480, payload=b"\x80" * 240), 0.0)
    out = audio(s.flush(0.0))
    # 80 left over + 240 concealed + 240 + 80 of padding.
    assert [f.pcm.size for f in out] == [160] * 4
    assert [f.concealed for f in out] == [True, True, False, False]


def test_reception_statistics_follow_rfc_3550() -> None:
    s = stream(max_held=0)
    for k in (0, 1, 2, 5, 6):
        push(s, k)
    reception = s.reception
    assert reception is not None
    assert (reception.expected, reception.received, reception.cumulative_lost) == (7, 5, 2)
    block = reception.report_block()
    assert block.fraction_lost == (2 << 8) // 7
    assert block.highest_sequence == 1006
    assert reception.report_block().fraction_lost == 0  # a new interval without loss


@settings(max_examples=200, deadline=None)
@given(
    count=st.integers(5, 60),
    seed=st.integers(0, 2**32 - 1),
    seq0=st.integers(0, 65535),
    drop_rate=st.sampled_from([0.0, 0.05, 0.2]),
    dup_rate=st.sampled_from([0.0, 0.1]),
)
def test_any_local_reordering_loss_and_duplication(
    count: int, seed: int, seq0: int, drop_rate: float, dup_rate: float
) -> None:
    """Real frames come out in order, each at most once, and the counters add up."""
    rng = np.random.default_rng(seed)
    order = sorted(range(count), key=lambda k: k + rng.uniform(0, 2.5))  # displaced <= 2
    arrivals = []
    for k in order:
        if rng.random() < drop_rate:
            continue
        arrivals.append(k)
        if rng.random() < dup_rate:
            arrivals.append(k)
    s = stream(max_held=3, max_conceal_ms=2000)
    out: list[ReceivedItem] = []
    for k in arrivals:
        out += s.push(rtp(seq0 + k, 160 * k, payload=marked(k)), 0.0)
    out += s.flush(0.0)
    unique = set(arrivals)
    got = ids(out)
    real = [k for k in got if k != "c"]
    stats = s.stats
    assert real == sorted(real, key=int) and len(real) == len(set(real))
    assert len(real) + stats.late == len(unique)
    assert stats.duplicates == len(arrivals) - len(unique)
    if not arrivals:
        return
    first = arrivals[0]
    assert len(real) + stats.lost == int(max(real, key=int)) - first + 1
    assert got.count("c") == stats.lost == stats.concealed_frames
    if drop_rate == 0.0:
        assert real == list(range(first, count))
        assert stats.late == first and stats.lost == 0


@pytest.mark.skipif(not native_opus_available(), reason="libopus cannot be loaded here")
def test_opus_losses_are_concealed_by_libopus_and_the_next_packet_joins_cleanly() -> None:
    frames = frames_of(speech(48000), 960)[50:70]
    encoder = OpusCodec(backend="native")
    payloads = [encoder.encode(frame) for frame in frames]
    s = InboundStream(OpusCodec(backend="native"), 111, max_held=0)
    twin = OpusCodec(backend="native")  # the same decoder history, concealed by hand
    out: list[ReceivedAudio] = []
    for k in (0, 1, 2, 3):
        out += audio(s.push(rtp(k, 960 * k, pt=111, payload=payloads[k]), 0.0))
        twin.decode(payloads[k])
    out += audio(s.push(rtp(6, 960 * 6, pt=111, payload=payloads[6]), 0.0))
    concealed = [f.pcm for f in out if f.concealed]
    assert len(concealed) == 2 and s.stats.lost == 2
    expected = twin.conceal(2 * 960)
    assert expected is not None
    np.testing.assert_array_equal(np.concatenate(concealed), expected)
    # libopus' concealment continues the voice instead of a fade to silence...
    assert np.abs(concealed[1]).max() > 0
    # ...and the decoder stayed in step: the packet after the hole decodes as it would.
    np.testing.assert_array_equal(out[-1].pcm, twin.decode(payloads[6]))


def test_codecs_without_concealment_still_get_the_fade() -> None:
    assert make_codec("PCMU").conceal(160) is None
    assert OpusCodec(backend="pyav").conceal(960) is None
