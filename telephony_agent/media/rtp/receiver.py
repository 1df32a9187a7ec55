"""The inbound RTP stream, sans-I/O: reorder, drop, conceal, decode, re-frame.

Why no playout clock here: the listener is a speech model, not a loudspeaker.
It needs the caller's audio as early as possible, in order, with gaps filled;
it does not need it evenly spaced. So a packet that arrives in order is decoded
and handed on at once (zero added latency), and only a hole in the sequence
makes the stream wait - for at most :attr:`InboundStream.max_held` packets or
:attr:`InboundStream.max_hold_s` seconds (3 packets / 60 ms by default), after
which the missing packets are declared lost and concealed.

Loss concealment: a codec with concealment of its own (Opus through libopus)
synthesises the missing audio from its decoder state, which also keeps that
state in step, so the next real packet joins without a click. For the others
the first 20 ms of a hole repeat the last good frame with a linear fade-out
(hides a single lost packet without a click), the rest is silence. The hole's
length comes from the RTP timestamps (exact for any ptime), bounded by
:attr:`InboundStream.max_conceal_ms`; a longer outage is real time that the
leg covers with its own idle fill, so the stream does not invent seconds of
audio in one burst. Concealed frames are flagged so the leg can drop the ones
its idle fill already covered.

Drops, each counted in :class:`RtpStats`, never raised: payload types not
negotiated, duplicates (same extended sequence number seen), late packets
(their place was already played or skipped), and sequence jumps larger than
RFC 3550 A.1 allows (3000 ahead, 100 behind) until a second packet confirms the
new numbering. A new SSRC drains what the old source left held and starts
fresh sequence state. Sequence numbers are extended across 16-bit wrap;
timestamps are compared modulo 2^32.

Output is frames of exactly ``frame_samples`` (20 ms at the leg rate): a peer
with ptime 30, 40 or 60 has its packets split and re-chunked, carrying the odd
remainder to the next packet. On the usual 20 ms path a decoded packet is the
frame itself, no copy.

G.711 passthrough (:meth:`InboundStream.deliver_payloads`): a PCMU or PCMA stream
hands on the payload bytes of each frame instead of decoding them
(:class:`~telephony_agent.media.rtp.passthrough.ReceivedPayload`), with the same
ordering, loss declaration and re-framing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from telephony_agent.audio.g711 import G711Law
from telephony_agent.media.rtp.codecs import RtpCodec
from telephony_agent.media.rtp.dtmf import DEFAULT_END_TIMEOUT_S, DtmfDigit, DtmfReceiver
from telephony_agent.media.rtp.passthrough import G711Frames, ReceivedPayload
from telephony_agent.media.rtp.rtcp import ReceptionStatistics
from telephony_agent.media.rtp.serial import extend_seq, ts_delta
from telephony_agent.media.rtp.stats import RtpStats
from telephony_agent.media.rtp.wire import RtpPacket

__all__ = ["MAX_DROPOUT", "MAX_MISORDER", "InboundStream", "ReceivedAudio", "ReceivedItem"]

#: RFC 3550 A.1: a forward jump larger than this is not loss but a renumbering.
MAX_DROPOUT = 3000
#: RFC 3550 A.1: a packet further behind than this is a renumbering, not a late packet.
MAX_MISORDER = 100
_RECENT = 128
#: Marks an empty slot of the recent-packets ring (extended numbers can be negative).
_EMPTY = -(1 << 62)


@dataclass(frozen=True, slots=True)
class ReceivedAudio:
    """One 20 ms frame at the leg rate; `concealed` when synthesised for lost packets."""

    pcm: NDArray[np.int16]
    concealed: bool


ReceivedItem = ReceivedAudio | ReceivedPayload | DtmfDigit

#: Codecs whose payloads can be handed on undecoded, by their law.
_G711_LAWS: dict[str, G711Law] = {"PCMU": "pcmu", "PCMA": "pcma"}


class InboundStream:
    """Packets of the latched peer in (any order), frames and digits out (in order)."""

    def __init__(
        self,
        codec: RtpCodec,
        payload_type: int,
        *,
        dtmf_payload_type: int | None = None,
        stats: RtpStats | None = None,
        max_held: int = 3,
        max_hold_s: float = 0.06,
        max_conceal_ms: int = 200,
        dtmf_end_timeout_s: float = DEFAULT_END_TIMEOUT_S,
    ) -> None:
        if max_held < 0 or max_hold_s < 0 or max_conceal_ms < 0:
            raise ValueError("reorder and concealment limits must be >= 0")
        self.stats = stats if stats is not None else RtpStats()
        self.max_held = max_held
        self.max_hold_s = max_hold_s
        self.max_conceal_ms = max_conceal_ms
        self._dtmf_end_timeout_s = dtmf_end_timeout_s
        self.codec = codec
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self.dtmf = DtmfReceiver(codec.clock_rate, end_timeout_s=dtmf_end_timeout_s)
        self._configure_frames()
        #: Reception statistics of the current source (None before the first packet).
        self.reception: ReceptionStatistics | None = None
        self.ssrc: int | None = None
        self._next = 0
        self._max = 0
        self._held: dict[int, tuple[RtpPacket, float]] = {}
        self._recent = [_EMPTY] * _RECENT
        self._bad_seq: int | None = None
        self._missing = 0
        self._expected_ts: int | None = None
        self._last_packet_units = codec.timestamp_step
        self._pending: list[NDArray[np.int16]] = []
        self._pending_size = 0
        #: Payloads handed on undecoded (G.711 passthrough), or None: decode as usual.
        self._raw: G711Frames | None = None

    def deliver_payloads(self) -> bool:
        """Hand on G.711 payload bytes instead of PCM from now on; False (and PCM as
        before) when the codec is not G.711."""
        law = _G711_LAWS.get(self.codec.name)
        if law is None:
            return False
        if self._raw is None or self._raw.law != law:
            self._raw = G711Frames(law, self.codec.frame_samples)
        return True

    @property
    def passthrough_law(self) -> G711Law | None:
        """The law of the payloads handed on undecoded, or None when decoding."""
        return self._raw.law if self._raw is not None else None

    def _configure_frames(self) -> None:
        n = self.codec.frame_samples
        self.frame_samples = n
        self._fade = np.linspace(1.0, 0.0, n, dtype=np.float32)
        self._last_frame: NDArray[np.int16] | None = None
        self._max_conceal = self.codec.sample_rate * self.max_conceal_ms // 1000

    # ------------------------------------------------------------------ configuration

    def set_format(
        self, codec: RtpCodec, payload_type: int, dtmf_payload_type: int | None
    ) -> list[ReceivedItem]:
        """Switch to a renegotiated codec/payload types; returns digits still in progress."""
        out: list[ReceivedItem] = []
        if codec.clock_rate != self.codec.clock_rate:
            out.extend(self.dtmf.flush())
            self.dtmf = DtmfReceiver(codec.clock_rate, end_timeout_s=self._dtmf_end_timeout_s)
        if codec.sample_rate != self.codec.sample_rate:
            self._pending.clear()
            self._pending_size = 0
        self.codec = codec
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self._configure_frames()
        if self._raw is not None:
            # The other law (a re-INVITE PCMU <-> PCMA) is handed on in its own law;
            # any other codec is decoded again.
            self._raw = None
            self.deliver_payloads()
        self._expected_ts = None
        self._last_packet_units = codec.timestamp_step
        return out

    def restart(self) -> None:
        """Forget the source and anything held: the next packet starts afresh.

        For resuming after a hold, during which packets were ignored: without
        this, the sequence numbers skipped while on hold would count as lost
        and be concealed.
        """
        self.ssrc = None
        self._held.clear()
        self._pending.clear()
        self._pending_size = 0
        self._missing = 0
        self._last_frame = None
        if self._raw is not None:
            self._raw.reset()
        self.dtmf.flush()

    # ------------------------------------------------------------------ input

    def push(self, packet: RtpPacket, now: float) -> list[ReceivedItem]:
        """Take one parsed packet from the peer; returns what is ready to hand on."""
        stats = self.stats
        pt = packet.payload_type
        if pt != self.payload_type and pt != self.dtmf_payload_type:
            stats.wrong_pt += 1
            return []
        out: list[ReceivedItem] = []
        if packet.ssrc != self.ssrc:
            if self.ssrc is not None:
                stats.ssrc_changes += 1
                out.extend(self._drain(now))
                out.extend(self.dtmf.flush())
            self._start(packet.ssrc, packet.sequence_number)
        ext = extend_seq(packet.sequence_number, self._max)
        delta = ext - self._next
        if delta < 0:
            if -delta > MAX_MISORDER:
                out.extend(self._jump(packet, now))
            elif self._recent[ext % _RECENT] == ext:
                stats.duplicates += 1
            else:
                stats.late += 1
                self._recent[ext % _RECENT] = ext  # so a copy of it counts as a duplicate
            return out
        if ext in self._held:
            stats.duplicates += 1
            return out
        if delta > MAX_DROPOUT:
            out.extend(self._jump(packet, now))
            return out
        self._accept(packet, ext, now)
        out.extend(self._release(now))
        return out

    def poll(self, now: float) -> list[ReceivedItem]:
        """Called every tick: give up on holes held too long, time out DTMF ends."""
        out = self._release(now) if self._held else []
        out.extend(self.dtmf.poll(now))
        return out

    def flush(self, now: float) -> list[ReceivedItem]:
        """Hand on everything still held (the call is ending)."""
        out = self._drain(now)
        out.extend(self.dtmf.flush())
        if self._raw is not None:
            out.extend(self._raw.flush())
        if self._pending_size:
            pad = self.frame_samples - self._pending_size
            out.extend(self._frames(np.zeros(pad, dtype=np.int16), concealed=False))
        return out

    # ------------------------------------------------------------------ sequencing

    def _start(self, ssrc: int, seq: int) -> None:
        self.ssrc = ssrc
        self._next = self._max = seq
        self._held.clear()
        self._recent = [_EMPTY] * _RECENT
        self._bad_seq = None
        self._missing = 0
        self._expected_ts = None
        self.reception = ReceptionStatistics(ssrc, self.codec.clock_rate, seq)

    def _jump(self, packet: RtpPacket, now: float) -> list[ReceivedItem]:
        """A sequence number far from the expected one: restart only when the next confirms."""
        seq = packet.sequence_number
        if self._bad_seq is None or seq != self._bad_seq:
            self._bad_seq = (seq + 1) & 0xFFFF
            self.stats.seq_jumps += 1
            return []
        out = self._drain(now)
        self._start(packet.ssrc, seq)
        self._accept(packet, seq, now)
        out.extend(self._release(now))
        return out

    def _accept(self, packet: RtpPacket, ext: int, now: float) -> None:
        stats = self.stats
        self._bad_seq = None
        if ext < self._max:
            stats.reordered += 1
        else:
            self._max = ext
        stats.packets_in += 1
        stats.octets_in += len(packet.payload)
        reception = self.reception
        if reception is not None:
            reception.on_packet(ext)
            if packet.payload_type == self.payload_type:
                reception.on_timing(packet.timestamp, now)
        self._held[ext] = (packet, now)

    def _release(self, now: float, *, force: bool = False) -> list[ReceivedItem]:
        """Deliver held packets in order; skip a hole once the window gives up on it."""
        out: list[ReceivedItem] = []
        held = self._held
        while held:
            entry = held.pop(self._next, None)
            if entry is not None:
                out.extend(self._deliver(self._next, entry[0], now))
                self._next += 1
                continue
            if not force:
                oldest = min(arrival for _, arrival in held.values())
                if len(held) <= self.max_held and now - oldest < self.max_hold_s:
                    break
            first = min(held)
            skipped = first - self._next
            self.stats.lost += skipped
            self._missing += skipped
            self._next = first
        return out

    def _drain(self, now: float) -> list[ReceivedItem]:
        """Release all held packets, skipping holes (source change or end of stream)."""
        return self._release(now, force=True)

    # ------------------------------------------------------------------ payloads

    def _deliver(self, ext: int, packet: RtpPacket, now: float) -> list[ReceivedItem]:
        self._recent[ext % _RECENT] = ext
        if packet.payload_type != self.payload_type:
            digits = self.dtmf.on_packet(packet.timestamp, packet.payload, now)
            self.stats.dtmf_in += len(digits)
            return list(digits)
        out: list[ReceivedItem] = []
        raw = self._raw
        if raw is not None:
            if self._missing:
                samples = self._lost_samples(packet.timestamp)
                self.stats.concealed_frames += samples // self.frame_samples
                out.extend(raw.conceal(samples))
            if packet.payload:
                self._last_packet_units = len(packet.payload)
            self._expected_ts = (packet.timestamp + self._last_packet_units) & 0xFFFFFFFF
            out.extend(raw.frames(packet.payload or raw.silence_frame))
            return out
        if self._missing:
            out.extend(self._conceal(packet.timestamp))
        codec = self.codec
        errors = codec.decode_errors
        pcm = codec.decode(packet.payload)
        self.stats.decode_errors += codec.decode_errors - errors
        units = pcm.size * codec.clock_rate // codec.sample_rate
        if units:
            self._last_packet_units = units
        self._expected_ts = (packet.timestamp + self._last_packet_units) & 0xFFFFFFFF
        out.extend(self._frames(pcm, concealed=False))
        return out

    def _lost_samples(self, timestamp: int) -> int:
        """Samples lost before the packet with `timestamp` (from the timestamps when
        known, else from the packet count), bounded by `max_conceal_ms`."""
        codec = self.codec
        missing = self._missing
        self._missing = 0
        samples = codec.pcm_samples(missing * self._last_packet_units)
        if self._expected_ts is not None:
            gap = ts_delta(self._expected_ts, timestamp)
            if gap > 0:
                samples = codec.pcm_samples(gap)
        return min(samples, self._max_conceal)

    def _conceal(self, timestamp: int) -> list[ReceivedItem]:
        """Audio for the packets lost before the one with `timestamp`."""
        codec = self.codec
        samples = self._lost_samples(timestamp)
        if samples <= 0:
            return []
        fill = codec.conceal(samples)
        if fill is None or fill.size != samples:
            fill = np.zeros(samples, dtype=np.int16)
            last = self._last_frame
            if last is not None:
                head = min(samples, last.size)
                fill[:head] = (last[:head] * self._fade[:head]).astype(np.int16)
        self.stats.concealed_frames += samples // self.frame_samples
        return self._frames(fill, concealed=True)

    def _frames(self, pcm: NDArray[np.int16], *, concealed: bool) -> list[ReceivedItem]:
        """Cut decoded audio into exact frames, keeping the remainder for the next packet."""
        n = self.frame_samples
        if not self._pending_size and pcm.size == n:
            if not concealed:
                self._last_frame = pcm
            return [ReceivedAudio(pcm, concealed)]
        self._pending.append(pcm)
        self._pending_size += pcm.size
        if self._pending_size < n:
            return []
        data = np.concatenate(self._pending)
        whole = data.size - data.size % n
        rest = data[whole:]
        self._pending = [rest] if rest.size else []
        self._pending_size = rest.size
        rows = data[:whole].reshape(-1, n)
        if not concealed:
            self._last_frame = rows[-1]
        return [ReceivedAudio(row, concealed) for row in rows]
