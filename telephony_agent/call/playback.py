"""Agent speech on its way to the caller: decode, resample, queue, account.

Why it is its own (I/O-free) piece: barge-in correctness depends on knowing, per
Realtime item, exactly how much audio was received and how much was really played.
Keeping decode, resampling, the playout queue and that accounting together makes
the rule "truncate at what was played, never past what was received" testable
without sockets or clocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from telephony_agent.audio.gain import GainRamp
from telephony_agent.audio.playout import Frame, PlayoutBuffer
from telephony_agent.audio.resample import OutboundResampler


@dataclass(frozen=True)
class Interruption:
    """What a barge-in cut off: the item, how much of it was heard, and whether it was mid-play."""

    item_id: str | None
    played_ms: int
    received_ms: int
    dropped_ms: int
    was_playing: bool


class Playback:
    """Model audio (PCM16 at the model's output rate) → frames at the leg rate."""

    def __init__(self, model_rate: int, leg_rate: int, *, preroll_ms: int = 0) -> None:
        self.leg_rate = leg_rate
        self.model_rate = model_rate
        self.buffer = PlayoutBuffer(leg_rate, preroll_ms=preroll_ms)
        self._resampler = OutboundResampler(model_rate, leg_rate)
        #: Ducking while the caller may be interrupting (see `call/barge_in.py`).
        self.gain = GainRamp(leg_rate)
        self._item_id: str | None = None
        self._carry = b""
        self._received_bytes: dict[str, int] = {}

    def set_model_rate(self, model_rate: int) -> None:
        """The server may report a different output rate than we asked for; follow it."""
        if model_rate != self.model_rate:
            self._resampler.flush()
            self.model_rate = model_rate
            self._resampler = OutboundResampler(model_rate, self.leg_rate)

    def push_delta(self, item_id: str, audio: bytes) -> None:
        """Queue one audio delta of `item_id`; an odd trailing byte waits for the next delta."""
        if item_id != self._item_id:
            self.end_item()
            self._item_id = item_id
        self._received_bytes[item_id] = self._received_bytes.get(item_id, 0) + len(audio)
        data = self._carry + audio if self._carry else audio
        usable = len(data) & ~1
        self._carry = data[usable:]
        if usable == 0:
            return
        pcm = np.frombuffer(data[:usable], dtype="<i2").astype(np.int16, copy=False)
        out = self._resampler.process(pcm)
        if out.size:
            self.buffer.push(out, item_id)

    def end_item(self) -> None:
        """The current item is complete: push the resampler's tail so the last syllable plays."""
        if self._item_id is None:
            return
        tail = self._resampler.flush()
        if tail.size:
            self.buffer.push(tail, self._item_id)
        self.buffer.mark_complete()
        self._item_id = None
        self._carry = b""

    def received_ms(self, item_id: str) -> int:
        """Milliseconds of `item_id` received from the model, at the model's rate."""
        return self._received_bytes.get(item_id, 0) * 1000 // (2 * self.model_rate)

    def played_ms(self, item_id: str) -> int:
        return self.buffer.played_ms(item_id)

    def interrupt(self, item_id: str | None) -> Interruption:
        """Barge-in: stop at once, drop everything queued and the resampler's state."""
        was_playing = self.buffer.is_playing
        dropped = self.buffer.flush()
        self.gain.reset()
        self._resampler.flush()  # discarded: the caller must not hear the old tail
        self._item_id = None
        self._carry = b""
        if item_id is None:
            return Interruption(None, 0, 0, dropped, was_playing)
        received = self.received_ms(item_id)
        played = max(0, min(self.buffer.played_ms(item_id), received))
        return Interruption(item_id, played, received, dropped, was_playing)

    def duck(self, db: float) -> None:
        """Lower the agent's audio to `db` (ramped, no click) until `restore`."""
        self.gain.set_db(db)

    def restore(self) -> None:
        self.gain.set_db(0.0)

    def pop_frame(self) -> Frame:
        frame = self.buffer.pop_frame()
        if not frame.speech:
            return frame
        pcm = self.gain.apply(frame.pcm)
        return frame if pcm is frame.pcm else Frame(pcm, frame.item_id, frame.speech)

    def forget(self, item_id: str) -> None:
        self._received_bytes.pop(item_id, None)
        self.buffer.forget(item_id)
