"""Agent speech on its way to the caller: decode, resample, queue, account.

Why it is its own (I/O-free) piece: barge-in correctness depends on knowing, per
Realtime item, exactly how much audio was received and how much was really played.
Keeping decode, resampling, the playout queue and that accounting together makes
the rule "truncate at what was played, never past what was received" testable
without sockets or clocks.

Two kinds: `Playback` takes PCM16 at the model's rate (or G.711 from a model that sends
it to a leg that is not 8 kHz G.711) and resamples to the leg's rate; `G711Playback`
takes the model's G.711 for a leg of 8 kHz and queues the bytes untouched (passthrough),
where one byte is one sample and 8 bytes are one millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from telephony_agent.audio.g711 import G711Law, g711_decode, g711_encode
from telephony_agent.audio.gain import GainRamp
from telephony_agent.audio.playout import Frame, PlayoutBuffer
from telephony_agent.audio.resample import OutboundResampler

__all__ = ["AnyPlayback", "G711Playback", "Interruption", "Playback"]

G711_RATE = 8000


@dataclass(frozen=True)
class Interruption:
    """What a barge-in cut off: the item, how much of it was heard, and whether it was mid-play."""

    item_id: str | None
    played_ms: int
    received_ms: int
    dropped_ms: int
    was_playing: bool


class _Queue:
    """The parts both kinds share: the playout buffer and the per-item accounting."""

    def __init__(self, buffer: PlayoutBuffer, model_rate: int, sample_bytes: int) -> None:
        self.buffer = buffer
        self.model_rate = model_rate
        self._sample_bytes = sample_bytes
        #: Ducking while the caller may be interrupting (see `call/barge_in.py`); PCM
        #: legs only: G.711 passed through is cut, never ducked.
        self.gain: GainRamp | None = None
        self._item_id: str | None = None
        self._received_bytes: dict[str, int] = {}

    def _count(self, item_id: str, audio: bytes) -> None:
        if item_id != self._item_id:
            self.end_item()
            self._item_id = item_id
        self._received_bytes[item_id] = self._received_bytes.get(item_id, 0) + len(audio)

    def end_item(self) -> None:
        """The current item is complete: what is queued plays out in full."""
        if self._item_id is None:
            return
        self.buffer.mark_complete()
        self._item_id = None

    def received_ms(self, item_id: str) -> int:
        """Milliseconds of `item_id` received from the model, at the model's rate."""
        size = self._received_bytes.get(item_id, 0)
        return size * 1000 // (self._sample_bytes * self.model_rate)

    def played_ms(self, item_id: str) -> int:
        return self.buffer.played_ms(item_id)

    def interrupt(self, item_id: str | None) -> Interruption:
        """Barge-in: stop at once and drop everything queued."""
        was_playing = self.buffer.is_playing
        dropped = self.buffer.flush()
        if self.gain is not None:
            self.gain.reset()
        self._item_id = None
        if item_id is None:
            return Interruption(None, 0, 0, dropped, was_playing)
        received = self.received_ms(item_id)
        played = max(0, min(self.buffer.played_ms(item_id), received))
        return Interruption(item_id, played, received, dropped, was_playing)

    def duck(self, db: float) -> None:
        """Lower the agent's audio to `db` (ramped, no click) until `restore`."""
        if self.gain is not None:
            self.gain.set_db(db)

    def restore(self) -> None:
        if self.gain is not None:
            self.gain.set_db(0.0)

    def pop_frame(self) -> Frame:
        frame = self.buffer.pop_frame()
        if not frame.speech or self.gain is None:
            return frame
        pcm = self.gain.apply(frame.pcm)
        return frame if pcm is frame.pcm else Frame(pcm, frame.item_id, frame.speech)

    def forget(self, item_id: str) -> None:
        self._received_bytes.pop(item_id, None)
        self.buffer.forget(item_id)


class Playback(_Queue):
    """Model audio (PCM16 at the model's output rate, or G.711 of `model_law`) → frames
    of PCM16 at the leg rate."""

    def __init__(
        self,
        model_rate: int,
        leg_rate: int,
        *,
        preroll_ms: int = 0,
        model_law: G711Law | None = None,
    ) -> None:
        super().__init__(
            PlayoutBuffer(leg_rate, preroll_ms=preroll_ms),
            G711_RATE if model_law is not None else model_rate,
            1 if model_law is not None else 2,
        )
        self.leg_rate = leg_rate
        self._model_law = model_law
        self._resampler = OutboundResampler(self.model_rate, leg_rate)
        self._carry = b""
        self.gain = GainRamp(leg_rate)

    def set_model_rate(self, model_rate: int) -> None:
        """The server may report a different output rate than we asked for; follow it."""
        if model_rate != self.model_rate and self._model_law is None:
            self._resampler.flush()
            self.model_rate = model_rate
            self._resampler = OutboundResampler(model_rate, self.leg_rate)

    def push_delta(self, item_id: str, audio: bytes) -> None:
        """Queue one audio delta of `item_id`; an odd trailing byte waits for the next delta."""
        self._count(item_id, audio)
        if self._model_law is not None:
            pcm = g711_decode(audio, self._model_law)
        else:
            data = self._carry + audio if self._carry else audio
            usable = len(data) & ~1
            self._carry = data[usable:]
            if usable == 0:
                return
            pcm = np.frombuffer(data[:usable], dtype="<i2").astype(np.int16, copy=False)
        out = self._resampler.process(pcm)
        if out.size:
            self.buffer.push(out, item_id)

    def push_recording(self, item_id: str, pcm16: bytes, rate: int) -> None:
        """Queue a whole recording (PCM16 bytes at `rate`) as one complete item."""
        self.end_item()
        self.buffer.push(_resampled(pcm16, rate, self.leg_rate), item_id)
        self.buffer.mark_complete()

    def end_item(self) -> None:
        """The current item is complete: push the resampler's tail so the last syllable plays."""
        if self._item_id is None:
            return
        tail = self._resampler.flush()
        if tail.size:
            self.buffer.push(tail, self._item_id)
        self._carry = b""
        super().end_item()

    def interrupt(self, item_id: str | None) -> Interruption:
        """Barge-in: stop at once, drop everything queued and the resampler's state."""
        self._resampler.flush()  # discarded: the caller must not hear the old tail
        self._carry = b""
        return super().interrupt(item_id)


class G711Playback(_Queue):
    """The model's G.711 bytes → frames carrying those bytes for an 8 kHz G.711 leg.

    Nothing is decoded, resampled or encoded on the way; the frames' PCM is decoded
    only if a reader asks for it (a recording). An underrun is faded (the few bytes
    touched are decoded, ramped and re-encoded) and filled with encoded silence.
    """

    def __init__(self, law: G711Law, *, preroll_ms: int = 0) -> None:
        super().__init__(PlayoutBuffer(G711_RATE, preroll_ms=preroll_ms, law=law), G711_RATE, 1)
        self.law: G711Law = law
        self.leg_rate = G711_RATE

    def set_model_rate(self, model_rate: int) -> None:
        """G.711 is 8 kHz on every provider: nothing to follow."""
        del model_rate

    def push_delta(self, item_id: str, audio: bytes) -> None:
        """Queue one delta of `item_id` as it came: every byte is one sample."""
        self._count(item_id, audio)
        if audio:
            self.buffer.push(np.frombuffer(audio, dtype=np.uint8), item_id)

    def push_recording(self, item_id: str, pcm16: bytes, rate: int) -> None:
        """Queue a whole recording (PCM16 bytes at `rate`), encoded once, as one item."""
        self.end_item()
        self.buffer.push(g711_encode(_resampled(pcm16, rate, G711_RATE), self.law), item_id)
        self.buffer.mark_complete()


def _resampled(pcm16: bytes, rate: int, leg_rate: int) -> NDArray[np.int16]:
    """A whole recording at the leg's rate (done once, when the call starts)."""
    pcm = np.frombuffer(pcm16[: len(pcm16) & ~1], dtype="<i2").astype(np.int16)
    if rate == leg_rate:
        return pcm
    resampler = OutboundResampler(rate, leg_rate)
    return np.concatenate([resampler.process(pcm), resampler.flush()])


#: Either kind of playout: the Call holds one or the other for its whole life.
AnyPlayback = Playback | G711Playback
