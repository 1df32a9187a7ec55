"""RFC 4733 telephone-events: payload format, the receiver's exactly-once rule, the sender."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony_agent.media.rtp.dtmf import (
    DEFAULT_END_TIMEOUT_S,
    DIGIT_EVENTS,
    DtmfPacket,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
)


def event(code: int, duration: int, *, end: bool = False, volume: int = 10) -> bytes:
    return TelephoneEvent(code, end, volume, duration).serialize()


def test_payload_round_trip() -> None:
    payload = event(11, 800, end=True, volume=7)
    assert payload == bytes([11, 0x87, 0x03, 0x20])
    assert TelephoneEvent.parse(payload) == TelephoneEvent(11, True, 7, 800)
    with pytest.raises(ValueError):
        TelephoneEvent.parse(b"\x01\x02")


def test_event_codes_of_the_digits() -> None:
    assert [DIGIT_EVENTS[d] for d in "0123456789"] == list(range(10))
    assert (DIGIT_EVENTS["*"], DIGIT_EVENTS["#"]) == (10, 11)
    assert [DIGIT_EVENTS[d] for d in "ABCD"] == [12, 13, 14, 15]


# ---------------------------------------------------------------------- receiver


def test_one_digit_reported_once_despite_three_end_packets() -> None:
    rx = DtmfReceiver(8000)
    got = []
    for i, duration in enumerate((160, 320, 480, 640)):
        got += rx.on_packet(1000, event(5, duration), now=i * 0.02)
    for i in range(3):
        got += rx.on_packet(1000, event(5, 800, end=True), now=0.1 + i * 0.02)
    got += rx.poll(10.0)
    assert [(d.digit, d.duration_ms, d.timestamp) for d in got] == [("5", 100, 1000)]
    assert rx.ends_lost == 0


def test_lost_end_packets_reported_when_the_next_event_starts() -> None:
    rx = DtmfReceiver(8000)
    got = []
    for duration in (160, 320, 480):
        got += rx.on_packet(1000, event(1, duration), now=0.0)
    assert got == []
    got += rx.on_packet(3000, event(2, 160), now=0.1)
    got += rx.on_packet(3000, event(2, 400, end=True), now=0.15)
    assert [(d.digit, d.duration_ms) for d in got] == [("1", 60), ("2", 50)]
    assert rx.ends_lost == 1


def test_lost_end_packets_reported_after_the_timeout_and_only_once() -> None:
    rx = DtmfReceiver(8000)
    assert rx.on_packet(1000, event(10, 160), now=1.0) == []
    assert rx.on_packet(1000, event(10, 480), now=1.04) == []
    assert rx.poll(1.04 + DEFAULT_END_TIMEOUT_S / 2) == []
    got = rx.poll(1.04 + DEFAULT_END_TIMEOUT_S)
    assert [(d.digit, d.duration_ms) for d in got] == [("*", 60)]
    # The end packets arriving after all must not report it again.
    assert rx.on_packet(1000, event(10, 800, end=True), now=2.0) == []
    assert rx.poll(5.0) == []


def test_duration_uses_the_clock_rate() -> None:
    rx = DtmfReceiver(48000)
    got = rx.on_packet(0, event(12, 4800, end=True), now=0.0)
    assert [(d.digit, d.duration_ms) for d in got] == [("A", 100)]


def test_longest_duration_wins_even_when_updates_arrive_shrinking() -> None:
    rx = DtmfReceiver(8000)
    rx.on_packet(7, event(3, 640), now=0.0)
    got = rx.on_packet(7, event(3, 320, end=True), now=0.02)
    assert got[0].duration_ms == 80


def test_non_digit_events_and_short_payloads_are_dropped_and_counted() -> None:
    rx = DtmfReceiver(8000)
    assert rx.on_packet(1, event(16, 800, end=True), now=0.0) == []  # flash
    assert rx.on_packet(2, b"\x01", now=0.0) == []
    assert (rx.ignored, rx.malformed) == (1, 1)


def test_straggler_of_an_older_event_is_ignored() -> None:
    rx = DtmfReceiver(8000)
    rx.on_packet(5000, event(4, 160), now=0.0)
    assert rx.on_packet(4000, event(9, 800), now=0.01) == []
    got = rx.on_packet(5000, event(4, 800, end=True), now=0.1)
    assert [d.digit for d in got] == ["4"]


def test_event_timestamps_across_the_32_bit_wrap() -> None:
    rx = DtmfReceiver(8000)
    rx.on_packet(0xFFFF_FF00, event(1, 160), now=0.0)
    got = rx.on_packet(0x0000_0100, event(2, 160), now=0.2)  # newer, after the wrap
    assert [d.digit for d in got] == ["1"]
    assert [d.digit for d in rx.flush()] == ["2"]


# ---------------------------------------------------------------------- sender


def run_sender(sender: DtmfSender, ticks: int, start_ts: int = 0) -> list[DtmfPacket | None]:
    out = []
    for tick in range(ticks):
        out.append(sender.tick((start_ts + tick * sender.step) & 0xFFFFFFFF))
    return out


def test_sender_sequence_for_one_digit() -> None:
    sender = DtmfSender(8000)
    sender.queue("7")
    out = run_sender(sender, 10, start_ts=5000)
    packets = [p for p in out if p is not None]
    assert out[7:] == [None, None, None]
    decoded = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [e.duration for e in decoded] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in decoded] == [False] * 4 + [True] * 3
    assert {e.event for e in decoded} == {7}
    assert {p.timestamp for p in packets} == {5000}
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert not sender.busy


def test_sender_gap_then_the_next_digit_with_its_own_timestamp() -> None:
    sender = DtmfSender(8000, tone_ms=60, gap_ms=60)
    sender.queue("1#")
    out = run_sender(sender, 12)
    kinds = [
        "-" if p is None else ("E" if TelephoneEvent.parse(p.payload).end else "t") for p in out
    ]
    # 60 ms tone: 2 updates and the end; 2 end repeats; one audio tick of gap; next digit.
    assert "".join(kinds) == "ttEEE-ttEEE-"
    second = out[6]
    assert second is not None and second.marker
    assert second.timestamp == 6 * 160
    assert TelephoneEvent.parse(second.payload).event == 11


def test_sender_at_48_khz() -> None:
    sender = DtmfSender(48000)
    sender.queue("D")
    packets = [p for p in run_sender(sender, 8) if p is not None]
    durations = [TelephoneEvent.parse(p.payload).duration for p in packets]
    assert durations == [960, 1920, 2880, 3840, 4800, 4800, 4800]


def test_sender_validates_digits_and_settings() -> None:
    sender = DtmfSender(8000)
    assert sender.valid("0123456789*#abcd")
    assert not sender.valid("12x")
    with pytest.raises(ValueError):
        sender.queue("1,2")
    with pytest.raises(ValueError):
        DtmfSender(48000, tone_ms=2000)  # 96000 units overflow the 16-bit duration
    with pytest.raises(ValueError):
        DtmfSender(8000, tone_ms=10)


def test_clear_stops_playing() -> None:
    sender = DtmfSender(8000)
    sender.queue("123")
    sender.tick(0)
    sender.clear()
    assert not sender.busy
    assert sender.tick(160) is None


@settings(max_examples=150, deadline=None)
@given(
    digits=st.text(alphabet="0123456789*#ABCD", min_size=1, max_size=6),
    tone_ms=st.sampled_from([40, 60, 100, 200]),
    drop=st.lists(st.booleans(), min_size=200, max_size=200),
)
def test_sent_digits_are_received_exactly_once_under_loss(
    digits: str, tone_ms: int, drop: list[bool]
) -> None:
    """Any loss pattern that leaves each event at least one packet yields each digit once."""
    sender = DtmfSender(8000, tone_ms=tone_ms)
    sender.queue(digits)
    packets = [p for p in run_sender(sender, 200, start_ts=0xFFFF_F000) if p is not None]
    kept = [p for p, lost in zip(packets, drop, strict=False) if not lost]
    for ts in {p.timestamp for p in packets}:
        if not any(p.timestamp == ts for p in kept):
            kept.append(next(p for p in packets if p.timestamp == ts))
    kept.sort(key=lambda p: packets.index(p))
    rx = DtmfReceiver(8000)
    got = []
    for i, packet in enumerate(kept):
        got += rx.on_packet(packet.timestamp, packet.payload, now=i * 0.02)
    got += rx.flush()
    assert "".join(d.digit for d in got) == digits
    complete = {p.timestamp for p in kept if TelephoneEvent.parse(p.payload).end}
    for digit in got:
        if digit.timestamp in complete:
            assert digit.duration_ms == tone_ms
