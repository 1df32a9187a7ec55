"""What an inbound RTP stream hands a leg's event queue, with silence where the peer sent none.

Why this is shared: the plain RTP leg and the WebRTC leg both decode their
caller's packets with :class:`~telephony_agent.media.rtp.receiver.InboundStream`
and must behave the same when the packets stop. The model behind the Call
detects the end of a turn from silence, so a peer that goes quiet on the wire
(DTX or comfort noise, a digit playing as RFC 4733 events, a muted browser
microphone, an outage) must still be heard as silence. After ``idle_fill_ms``
without caller audio the feed hands on one silent frame per media-clock tick.
When packets resume after such a hole, the stream conceals the missing ones;
concealed frames for time the idle fill already covered are dropped, so no
hole is filled twice and the caller's audio is not pushed later.

In G.711 passthrough the stream hands on payload bytes and the idle fill is the
law's encoded silence, so nothing on the way is decoded.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from telephony_agent.audio.g711 import SILENCE_CODE, G711Law
from telephony_agent.media.leg import AudioIn, DtmfIn, LegEvent
from telephony_agent.media.rtp.dtmf import DtmfDigit
from telephony_agent.media.rtp.passthrough import ReceivedPayload
from telephony_agent.media.rtp.receiver import ReceivedAudio, ReceivedItem
from telephony_agent.media.rtp.stats import RtpStats

__all__ = ["EventQueue", "InboundFeed"]


class EventQueue(Protocol):
    """Where the feed puts events: an `asyncio.Queue`, or a leg's `Outlet`."""

    def put_nowait(self, item: LegEvent, /) -> None: ...


class InboundFeed:
    """Frames and digits from an inbound stream into a leg's queue, idle fill on ticks."""

    def __init__(
        self,
        queue: EventQueue,
        stats: RtpStats,
        frame_samples: int,
        *,
        idle_fill_ms: int = 200,
    ) -> None:
        self._queue = queue
        self._stats = stats
        self.frame_samples = frame_samples
        self._idle_fill_ticks = max(1, idle_fill_ms // 20)
        self._ticks_idle = 0
        self._idle_credit = 0
        #: True once the first packet arrived: idle fill only starts after it.
        self.received_any = False
        #: Audio frames handed on from packets (decoded or concealed, not idle fill).
        self.frames_in = 0
        #: The idle fill of G.711 passthrough (encoded silence), or None: PCM zeros.
        self._silent_payload: tuple[bytes, G711Law] | None = None

    def deliver(self, items: list[ReceivedItem]) -> None:
        """Queue what the stream released; stamps frames for the bridge's latency probe."""
        if not items:
            return
        queue = self._queue
        now = time.monotonic()
        for item in items:
            if isinstance(item, ReceivedAudio | ReceivedPayload):
                if item.concealed and self._idle_credit > 0:
                    self._idle_credit -= 1
                    continue
                if not item.concealed:
                    self._idle_credit = 0
                self._ticks_idle = 0
                self.frames_in += 1
                if isinstance(item, ReceivedAudio):
                    queue.put_nowait(AudioIn(item.pcm, now))
                else:
                    queue.put_nowait(AudioIn(None, now, payload=item.payload, law=item.law))
            elif isinstance(item, DtmfDigit):
                queue.put_nowait(DtmfIn(item.digit, item.duration_ms))

    def packet_arrived(self) -> None:
        """Note that the peer is sending (called for every accepted packet)."""
        self.received_any = True

    def on_tick(self) -> None:
        """One media-clock tick: a silent frame once the peer has been quiet too long."""
        if not self.received_any:
            return
        self._ticks_idle += 1
        if self._ticks_idle > self._idle_fill_ticks:
            self._stats.idle_frames += 1
            self._idle_credit += 1
            silent = self._silent_payload
            if silent is None:
                self._queue.put_nowait(AudioIn(np.zeros(self.frame_samples, dtype=np.int16)))
            else:
                self._queue.put_nowait(AudioIn(None, payload=silent[0], law=silent[1]))

    def resume(self) -> None:
        """Start counting quiet ticks afresh (the leg comes off hold)."""
        self._ticks_idle = 0

    def set_frame_samples(self, frame_samples: int) -> None:
        """The codec changed to another PCM rate: idle frames change size with it."""
        self.frame_samples = frame_samples

    def set_passthrough(self, law: G711Law | None) -> None:
        """Idle fill as `law`'s encoded silence (G.711 passthrough), or PCM zeros (None)."""
        if law is None:
            self._silent_payload = None
        else:
            self._silent_payload = (bytes([SILENCE_CODE[law]]) * self.frame_samples, law)
