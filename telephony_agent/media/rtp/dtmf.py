"""RFC 4733 telephone-events (DTMF in RTP): a sans-I/O receiver and sender.

Why our own: aiortc has no RFC 4733 support, and SIP callers press keys to
navigate, confirm and end calls.

Payload (4 bytes, §2.3): ``event`` (0-9, 10 = '*', 11 = '#', 12-15 = 'A'-'D'),
``E`` bit (end of event), 6-bit ``volume`` (-dBm0), 16-bit ``duration`` in RTP
clock units since the event's start. All packets of one event carry the event's
start timestamp; the duration grows with each update.

Receiver: a digit is reported exactly once per event (keyed by its RTP
timestamp), when the first end packet arrives. The sender repeats the end packet
three times, so later copies are dropped by remembering the timestamps already
reported. When all end packets are lost, the event is still reported once: as
soon as a packet with another timestamp arrives (a new event), or after
:data:`DEFAULT_END_TIMEOUT_S` without any packet of the event. That timeout is
longer than the update interval a sender uses (one packet per 20-50 ms, §2.5.1.2)
plus network jitter, and short enough that a caller who pressed one key and then
waits is heard promptly. The reported duration is the longest one seen.

Sender: one packet per 20 ms media tick. The first packet of an event has the
marker bit and a duration of one tick; each following tick sends an update with
the duration grown by one tick; the tick that reaches the tone length sends the
end packet, and the two following ticks repeat it (three end packets with the
same timestamp and duration, §2.5.1.4). Then comes the inter-digit gap, during
which ordinary audio flows again; the two end repeats count towards the gap.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from dataclasses import dataclass
from enum import Enum, auto

from telephony_agent.media.rtp.serial import ts_delta

__all__ = [
    "DEFAULT_END_TIMEOUT_S",
    "DIGIT_EVENTS",
    "DtmfDigit",
    "DtmfPacket",
    "DtmfReceiver",
    "DtmfSender",
    "TelephoneEvent",
]

DIGITS = "0123456789*#ABCD"
#: Event code of every DTMF digit (RFC 4733 §3.2).
DIGIT_EVENTS: dict[str, int] = {digit: code for code, digit in enumerate(DIGITS)}
DEFAULT_END_TIMEOUT_S = 0.25
_PAYLOAD = struct.Struct("!BBH")
_END_REPEATS = 3
_TICK_MS = 20


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One decoded telephone-event payload."""

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """Decode the first 4 bytes; raises ValueError when the payload is shorter."""
        if len(payload) < _PAYLOAD.size:
            raise ValueError(f"telephone-event payload of {len(payload)} bytes")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        flags = (0x80 if self.end else 0) | (self.volume & 0x3F)
        return _PAYLOAD.pack(self.event, flags, self.duration)


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """A received key press: the digit, how long it was held, and its event timestamp."""

    digit: str
    duration_ms: int
    timestamp: int


@dataclass(slots=True)
class _Pending:
    timestamp: int
    event: int
    duration: int
    last_seen: float


class DtmfReceiver:
    """Turns telephone-event packets (in sequence order) into digits, once per event."""

    def __init__(self, clock_rate: int, *, end_timeout_s: float = DEFAULT_END_TIMEOUT_S) -> None:
        self.clock_rate = clock_rate
        self.end_timeout_s = end_timeout_s
        self._pending: _Pending | None = None
        # Timestamps of recently reported events: end repeats and late updates are dropped.
        self._reported: deque[int] = deque(maxlen=8)
        #: Payloads too short to parse.
        self.malformed = 0
        #: Events that are not DTMF digits (flash, tones of RFC 4734, ...), ignored.
        self.ignored = 0
        #: Digits reported without having seen an end packet.
        self.ends_lost = 0

    def on_packet(self, timestamp: int, payload: bytes, now: float) -> list[DtmfDigit]:
        """Feed one telephone-event packet; returns the digits it completes (0, 1 or 2)."""
        try:
            event = TelephoneEvent.parse(payload)
        except ValueError:
            self.malformed += 1
            return []
        if event.event >= len(DIGITS):
            self.ignored += 1
            return []
        if timestamp in self._reported:
            return []
        done: list[DtmfDigit] = []
        pending = self._pending
        if pending is not None and pending.timestamp != timestamp:
            if ts_delta(pending.timestamp, timestamp) < 0:
                return []  # a straggler of an event older than the one in progress
            done.append(self._report(pending, end_seen=False))
            pending = None
        if pending is None:
            pending = _Pending(timestamp, event.event, event.duration, now)
            self._pending = pending
        else:
            pending.duration = max(pending.duration, event.duration)
            pending.last_seen = now
        if event.end:
            done.append(self._report(pending, end_seen=True))
        return done

    def poll(self, now: float) -> list[DtmfDigit]:
        """Report an event whose end packets never came, once it has been quiet long enough."""
        pending = self._pending
        if pending is not None and now - pending.last_seen >= self.end_timeout_s:
            return [self._report(pending, end_seen=False)]
        return []

    def flush(self) -> list[DtmfDigit]:
        """Report the event in progress now (the stream is ending or changing source)."""
        pending = self._pending
        return [] if pending is None else [self._report(pending, end_seen=False)]

    def _report(self, pending: _Pending, *, end_seen: bool) -> DtmfDigit:
        self._pending = None
        self._reported.append(pending.timestamp)
        if not end_seen:
            self.ends_lost += 1
        duration_ms = round(pending.duration * 1000 / self.clock_rate)
        return DtmfDigit(DIGITS[pending.event], duration_ms, pending.timestamp)


@dataclass(frozen=True, slots=True)
class DtmfPacket:
    """What the sender wants sent on this tick instead of audio."""

    timestamp: int
    payload: bytes
    marker: bool


class _State(Enum):
    IDLE = auto()
    TONE = auto()
    END = auto()
    GAP = auto()


class DtmfSender:
    """Plays queued digits as telephone-event packets, one packet per 20 ms tick."""

    def __init__(
        self,
        clock_rate: int,
        *,
        tone_ms: int = 100,
        gap_ms: int = 50,
        volume: int = 10,
    ) -> None:
        self.clock_rate = clock_rate
        self.step = clock_rate * _TICK_MS // 1000
        self.tone_units = clock_rate * tone_ms // 1000
        if tone_ms < _TICK_MS or self.tone_units > 0xFFFF:
            raise ValueError(
                f"tone_ms {tone_ms} must be >= {_TICK_MS} and fit a 16-bit duration "
                f"at {clock_rate} Hz"
            )
        if gap_ms < 0 or not 0 <= volume <= 63:
            raise ValueError("gap_ms must be >= 0 and volume 0..63")
        # Ticks after the first end packet before the next digit starts (the repeats
        # of the end packet take two of them).
        self.gap_ticks = max(_END_REPEATS - 1, math.ceil(gap_ms / _TICK_MS))
        self.volume = volume
        self._queue: deque[int] = deque()
        self._state = _State.IDLE
        self._event = 0
        self._timestamp = 0
        self._duration = 0
        self._countdown = 0

    @staticmethod
    def valid(digits: str) -> bool:
        """True when every character is a DTMF digit (0-9, *, #, A-D, any case)."""
        return all(char in DIGIT_EVENTS for char in digits.upper())

    def queue(self, digits: str) -> None:
        """Append digits to play; raises ValueError for anything that is not a DTMF digit."""
        if not self.valid(digits):
            raise ValueError(f"not DTMF digits: {digits!r}")
        self._queue.extend(DIGIT_EVENTS[char] for char in digits.upper())

    @property
    def busy(self) -> bool:
        """True while digits are queued or an event (or its gap) is in progress."""
        return bool(self._queue) or self._state is not _State.IDLE

    def clear(self) -> None:
        """Drop queued digits and stop the current event without end packets."""
        self._queue.clear()
        self._state = _State.IDLE

    def tick(self, timestamp: int) -> DtmfPacket | None:
        """This tick's telephone-event packet, or None when audio should be sent.

        `timestamp` is the RTP timestamp the audio frame of this tick would carry;
        a new event takes it as its own timestamp.
        """
        state = self._state
        if state is _State.GAP:
            self._countdown -= 1
            if self._countdown > 0:
                return None
            self._state = state = _State.IDLE
        if state is _State.IDLE:
            if not self._queue:
                return None
            self._event = self._queue.popleft()
            self._timestamp = timestamp
            self._duration = min(self.step, self.tone_units)
            return self._packet(marker=True)
        if state is _State.TONE:
            self._duration = min(self._duration + self.step, self.tone_units)
            return self._packet(marker=False)
        # END: a repeat of the end packet.
        self._countdown -= 1
        packet = self._emit(end=True, marker=False)
        if self._countdown == 0:
            self._state = _State.GAP
            self._countdown = self.gap_ticks - (_END_REPEATS - 1) + 1
        return packet

    def _packet(self, *, marker: bool) -> DtmfPacket:
        if self._duration >= self.tone_units:
            self._state = _State.END
            self._countdown = _END_REPEATS - 1
            return self._emit(end=True, marker=marker)
        self._state = _State.TONE
        return self._emit(end=False, marker=marker)

    def _emit(self, *, end: bool, marker: bool) -> DtmfPacket:
        payload = TelephoneEvent(self._event, end, self.volume, self._duration).serialize()
        return DtmfPacket(self._timestamp, payload, marker)
