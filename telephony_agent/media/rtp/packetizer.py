"""The outbound RTP stream, sans-I/O: one frame per media tick in, RTP packets out.

Why it sends silence instead of pausing: many SBCs and phones treat a stream
that stops as a dead call (media timeouts), and a continuous stream keeps the
far end's jitter buffer and NAT bindings alive. So every tick produces a packet
(or, with a longer ptime, contributes to one), speech or not.

Numbering follows RFC 3550: a random SSRC, random first sequence number and
timestamp, the sequence number +1 per packet, the timestamp +samples-per-tick
in the codec's RTP clock per tick - also across ticks that send nothing (hold),
since the timestamp tracks the sampling clock, not the packet count. The
marker bit flags the first packet of each talk spurt (a frame with
``speech=True`` after one without), the first packet of the stream and the
first after a pause or a codec change, so the far end may re-adapt its playout.

DTMF (RFC 4733) shares the stream: while a digit plays, :class:`DtmfSender`'s
telephone-event packet replaces the audio packet of that tick, on the same
SSRC, sequence and timestamp clock.

ptime longer than 20 ms is supported for PCMU, PCMA and G.722 only (their
payloads concatenate); Opus frames cannot be glued together without a
repacketiser, and 20 ms is what every peer accepts anyway.

G.711 passthrough: a frame that already carries G.711 bytes of this stream's law
(`Frame.payload`) is sent as it is; a frame of the other law, or PCM, is encoded.
"""

from __future__ import annotations

import secrets

from telephony_agent.audio.playout import Frame
from telephony_agent.media.rtp.codecs import RtpCodec
from telephony_agent.media.rtp.dtmf import DtmfSender
from telephony_agent.media.rtp.wire import RtpPacket

__all__ = ["Packetizer"]

_TICK_MS = 20
_CONCATENABLE = frozenset({"PCMU", "PCMA", "G722"})
_G711_LAWS = {"PCMU": "pcmu", "PCMA": "pcma"}


class Packetizer:
    """Numbers, times and encodes our outbound packets; one call per media tick."""

    def __init__(
        self,
        codec: RtpCodec,
        payload_type: int,
        *,
        dtmf_payload_type: int | None = None,
        ptime_ms: int = _TICK_MS,
        ssrc: int | None = None,
        sequence: int | None = None,
        timestamp: int | None = None,
        dtmf_tone_ms: int = 100,
        dtmf_gap_ms: int = 50,
    ) -> None:
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc & 0xFFFFFFFF
        #: Sequence number of the next packet.
        self.sequence = secrets.randbits(16) if sequence is None else sequence & 0xFFFF
        #: RTP timestamp of the next tick.
        self.timestamp = secrets.randbits(32) if timestamp is None else timestamp & 0xFFFFFFFF
        #: Timestamp of the last packet sent (for RTCP sender reports).
        self.last_timestamp = self.timestamp
        #: Packets and payload octets sent (for RTCP sender reports).
        self.packets = 0
        self.octets = 0
        self._dtmf_tone_ms = dtmf_tone_ms
        self._dtmf_gap_ms = dtmf_gap_ms
        self._marker_next = True
        self._was_speech = False
        self._chunks: list[bytes] = []
        self._chunk_ts = 0
        self._chunk_marker = False
        self.ptime_ms = ptime_ms
        self._configure(codec, payload_type, dtmf_payload_type)

    def _configure(self, codec: RtpCodec, payload_type: int, dtmf_payload_type: int | None) -> None:
        ptime = self.ptime_ms
        if ptime % _TICK_MS or not _TICK_MS <= ptime <= 120:
            raise ValueError(f"ptime must be a multiple of {_TICK_MS} ms up to 120, got {ptime}")
        if ptime != _TICK_MS and codec.name not in _CONCATENABLE:
            raise ValueError(f"ptime {ptime} is not supported for {codec.name}; use 20")
        if not 0 <= payload_type <= 127:
            raise ValueError(f"payload type {payload_type} out of range")
        self.codec = codec
        self._law = _G711_LAWS.get(codec.name)
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self.frames_per_packet = ptime // _TICK_MS
        self.step = codec.timestamp_step
        self.dtmf: DtmfSender | None = None
        if dtmf_payload_type is not None:
            self.dtmf = DtmfSender(
                codec.clock_rate, tone_ms=self._dtmf_tone_ms, gap_ms=self._dtmf_gap_ms
            )
        self._chunks.clear()

    def set_format(self, codec: RtpCodec, payload_type: int, dtmf_payload_type: int | None) -> None:
        """Switch codec/payload types (re-INVITE); numbering continues, the marker is set."""
        self._configure(codec, payload_type, dtmf_payload_type)
        self._marker_next = True

    def send_dtmf(self, digits: str) -> bool:
        """Queue digits for RFC 4733; False when no telephone-event type is negotiated
        or a character is not a DTMF digit."""
        if self.dtmf is None or not DtmfSender.valid(digits):
            return False
        self.dtmf.queue(digits)
        return True

    def skip(self) -> None:
        """A tick on which nothing is sent (hold, no destination): time moves on."""
        self.timestamp = (self.timestamp + self.step) & 0xFFFFFFFF
        self._chunks.clear()
        self._marker_next = True

    def packetize(self, frame: Frame) -> bytes | None:
        """This tick's packet, or None while a longer ptime is still being filled."""
        ts = self.timestamp
        self.timestamp = (ts + self.step) & 0xFFFFFFFF
        dtmf = self.dtmf
        if dtmf is not None:
            event = dtmf.tick(ts)
            if event is not None:
                self._chunks.clear()
                assert self.dtmf_payload_type is not None
                return self._serialize(
                    self.dtmf_payload_type, event.marker, event.timestamp, event.payload
                )
        marker = self._marker_next or (frame.speech and not self._was_speech)
        self._marker_next = False
        self._was_speech = frame.speech
        payload = frame.payload
        if payload is None or frame.law != self._law:
            payload = self.codec.encode(frame.pcm)
        if self.frames_per_packet == 1:
            return self._serialize(self.payload_type, marker, ts, payload)
        if not self._chunks:
            self._chunk_ts = ts
            self._chunk_marker = False
        self._chunks.append(payload)
        self._chunk_marker = self._chunk_marker or marker
        if len(self._chunks) < self.frames_per_packet:
            return None
        payload = b"".join(self._chunks)
        self._chunks.clear()
        return self._serialize(self.payload_type, self._chunk_marker, self._chunk_ts, payload)

    def _serialize(self, payload_type: int, marker: bool, timestamp: int, payload: bytes) -> bytes:
        packet = RtpPacket(
            payload_type=payload_type,
            marker=int(marker),
            sequence_number=self.sequence,
            timestamp=timestamp,
            ssrc=self.ssrc,
            payload=payload,
        )
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.last_timestamp = timestamp
        self.packets += 1
        self.octets += len(payload)
        data: bytes = packet.serialize()
        return data
