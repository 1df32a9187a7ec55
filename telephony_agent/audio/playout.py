"""The outbound playout queue: model audio in, one fixed-size frame per clock tick out.

Why it keeps per-item accounting: on barge-in the Realtime conversation item
must be truncated at what the caller actually heard, never at what was merely
received. Audio arrives in bursts much faster than real time, so "received" and
"played" differ by seconds; the only place that knows the truth is the queue
that hands out frames. Accounting is exact to the sample, also when one frame
carries the end of one item and the start of the next.

Cost is per chunk, not per sample: the queue is a deque of the pushed numpy
arrays plus a read offset into the first one, so a frame is usually one slice.

Why a pre-roll: a talk spurt that starts playing the moment its first audio arrives
underruns whenever the next delta comes later than the queued audio lasts — the
outbound resampler holds back tens of milliseconds of the first delta, and a provider
streaming near real time (or a loaded machine) delivers the rest just too late. The
caller then hears a stutter with a click. So playout of a spurt waits until
`preroll_ms` is queued, or until the model says the item is complete (`mark_complete`),
whichever comes first. If the queue still runs dry mid-spurt, the last samples fade out
and the resumed audio fades in (no click), the spurt waits for its pre-roll again, and
the underrun is counted.

G.711 passthrough: with `law` set, the queue holds the model's G.711 codes (one byte a
sample, 8 kHz) and hands out frames that carry those bytes untouched; padding is the
law's encoded silence. Pre-roll, underrun counting and the per-item accounting are the
same; a fade at an underrun decodes, ramps and re-encodes only the few milliseconds it
touches, so the steady path never decodes.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from numpy.typing import NDArray

from telephony_agent.audio.g711 import (
    SILENCE_CODE,
    G711Law,
    LazyPcm,
    g711_decode,
    g711_encode,
)

__all__ = ["Frame", "PlayoutBuffer"]


class Frame(LazyPcm):
    """One frame of outbound audio: PCM16, or G.711 bytes passed through from the model.

    ``item_id`` is the item that was playing at the end of the frame (the last
    queued sample in it), or None for pure silence or audio pushed without an
    item. ``speech`` is False only when the frame is all padding.

    A passthrough frame carries ``payload`` (G.711 codes of ``law``) and no PCM; ``pcm``
    decodes it on first use (`LazyPcm`), so a leg of the same law sends the bytes as they
    are and only a reader that needs samples (a recorder, another codec) pays for decoding.
    """

    __slots__ = ("item_id", "speech")

    _needs = "a frame needs PCM, or a G.711 payload and its law"

    def __init__(
        self,
        pcm: NDArray[np.int16] | None,
        item_id: str | None,
        speech: bool,
        *,
        payload: bytes | None = None,
        law: G711Law | None = None,
    ) -> None:
        LazyPcm.__init__(self, pcm, payload, law)
        self.item_id = item_id
        self.speech = speech

    def __repr__(self) -> str:
        return f"Frame({self._kind()}, item_id={self.item_id!r}, speech={self.speech})"


class _Pcm:
    """Queue samples as PCM16."""

    dtype = np.int16

    def silence(self, n: int) -> NDArray[Any]:
        return np.zeros(n, dtype=np.int16)

    def faded(self, samples: NDArray[Any], ramp: NDArray[np.float32]) -> NDArray[Any]:
        return (samples * ramp).astype(np.int16)

    def frame(self, samples: NDArray[Any], item_id: str | None, speech: bool) -> Frame:
        return Frame(samples, item_id, speech)


class _G711:
    """Queue samples as G.711 codes of one law (passthrough)."""

    dtype = np.uint8

    def __init__(self, law: G711Law) -> None:
        self.law: G711Law = law
        self._code = SILENCE_CODE[law]

    def silence(self, n: int) -> NDArray[Any]:
        return np.full(n, self._code, dtype=np.uint8)

    def faded(self, samples: NDArray[Any], ramp: NDArray[np.float32]) -> NDArray[Any]:
        pcm = (g711_decode(samples, self.law) * ramp).astype(np.int16)
        return g711_encode(pcm, self.law)

    def frame(self, samples: NDArray[Any], item_id: str | None, speech: bool) -> Frame:
        return Frame(None, item_id, speech, payload=samples.tobytes(), law=self.law)


class PlayoutBuffer:
    """FIFO of audio chunks tagged with Realtime item ids, popped in fixed frames."""

    def __init__(
        self, rate: int, frame_ms: int = 20, preroll_ms: int = 0, law: G711Law | None = None
    ) -> None:
        if rate <= 0 or frame_ms <= 0 or (rate * frame_ms) % 1000:
            raise ValueError(f"{frame_ms} ms at {rate} Hz is not a whole number of samples")
        if preroll_ms < 0:
            raise ValueError(f"preroll_ms = {preroll_ms}: expected 0 or more")
        self._samples: _Pcm | _G711 = _Pcm() if law is None else _G711(law)
        #: The G.711 law of the queued codes, None for PCM16.
        self.law = law
        self.rate = rate
        self.frame_ms = frame_ms
        self.frame_samples = rate * frame_ms // 1000
        self.preroll_samples = rate * preroll_ms // 1000
        #: Playout is held (silence out) until the pre-roll is queued or the spurt is
        #: complete. With no pre-roll the buffer is a plain FIFO: no holding, no fades.
        self._spurts = self.preroll_samples > 0
        self._holding = self._spurts
        #: The model sent all of the current spurt: drain it, however little is queued.
        self._complete = False
        #: The last frame out ended mid-spurt (an underrun): fade the next audio in.
        self._fade_in = False
        self._fade = _fade_ramp(rate)
        #: Times the queue ran dry in the middle of a spurt.
        self.underruns = 0
        self._chunks: deque[tuple[NDArray[Any], str | None]] = deque()
        self._offset = 0
        self._buffered = 0
        self._received: dict[str, int] = {}
        self._played: dict[str, int] = {}

    # ------------------------------------------------------------------ queue

    def push(self, samples: NDArray[Any], item_id: str | None) -> None:
        """Queue audio (copied) for `item_id`; None means audio outside any Realtime item.
        Samples are PCM16, or G.711 codes of the buffer's law."""
        chunk = np.array(samples, dtype=self._samples.dtype, copy=True).reshape(-1)
        if item_id is not None:
            self._received[item_id] = self._received.get(item_id, 0) + chunk.size
        if chunk.size:
            self._chunks.append((chunk, item_id))
            self._buffered += chunk.size
            self._complete = False

    def mark_complete(self) -> None:
        """No more audio follows for now (the item is done): play out what is queued, and
        running dry afterwards is the end of the spurt, not an underrun."""
        self._complete = True

    def pop_frame(self) -> Frame:
        """Exactly one frame: queued audio first, zero padding when the queue runs dry."""
        n = self.frame_samples
        samples = self._samples
        if not self._buffered:
            return samples.frame(samples.silence(n), None, False)
        if self._holding:
            if self._buffered < self.preroll_samples and not self._complete:
                return samples.frame(samples.silence(n), None, False)
            self._holding = False
        chunk, item_id = self._chunks[0]
        start = self._offset
        if chunk.size - start >= n and not self._fade_in:
            self._take(item_id, n)
            whole = chunk[start : start + n]
            if not self._buffered:
                if self._spurts and not self._complete:
                    whole = whole.copy()  # faded below; the queued chunk stays as it was
                self._ran_dry(whole, n)
            return samples.frame(whole, item_id, True)
        pcm = samples.silence(n)
        filled = 0
        while filled < n and self._chunks:
            chunk, item_id = self._chunks[0]
            start = self._offset
            count = min(n - filled, chunk.size - start)
            pcm[filled : filled + count] = chunk[start : start + count]
            filled += count
            self._take(item_id, count)
        if self._fade_in:
            self._fade_in = False
            ramp = self._fade[: min(self._fade.size, filled)]
            pcm[: ramp.size] = samples.faded(pcm[: ramp.size], ramp)
        if not self._buffered:
            self._ran_dry(pcm, filled)
        return samples.frame(pcm, item_id, True)

    def _ran_dry(self, pcm: NDArray[Any] | None, filled: int) -> None:
        """The queue is empty after this frame: the spurt ended, or an underrun."""
        if not self._spurts:
            return
        self._holding = True
        if self._complete:
            return
        self.underruns += 1
        self._fade_in = True
        if pcm is not None and filled:
            ramp = self._fade[: min(self._fade.size, filled)][::-1]
            tail = slice(filled - ramp.size, filled)
            pcm[tail] = self._samples.faded(pcm[tail], ramp)

    def _take(self, item_id: str | None, count: int) -> None:
        """Advance the read position by `count` samples of the first chunk and account them."""
        if item_id is not None:
            self._played[item_id] = self._played.get(item_id, 0) + count
        self._buffered -= count
        self._offset += count
        if self._offset == self._chunks[0][0].size:
            self._chunks.popleft()
            self._offset = 0

    def flush(self) -> int:
        """Drop everything queued at once (barge-in); returns the milliseconds dropped."""
        dropped = self._buffered
        self._chunks.clear()
        self._offset = 0
        self._buffered = 0
        self._holding = self._spurts
        self._complete = False
        self._fade_in = False
        return self._ms(dropped)

    # ------------------------------------------------------------------ accounting

    def played_ms(self, item_id: str) -> int:
        """Milliseconds of `item_id` handed out by pop_frame (rounded down)."""
        return self._ms(self._played.get(item_id, 0))

    def received_ms(self, item_id: str) -> int:
        """Milliseconds of `item_id` ever pushed, flushed audio included (rounded down)."""
        return self._ms(self._received.get(item_id, 0))

    def played_samples(self, item_id: str) -> int:
        return self._played.get(item_id, 0)

    def received_samples(self, item_id: str) -> int:
        return self._received.get(item_id, 0)

    def forget(self, item_id: str) -> None:
        """Drop the accounting of an old item so long calls do not grow without bound."""
        self._played.pop(item_id, None)
        self._received.pop(item_id, None)

    @property
    def buffered_ms(self) -> int:
        return self._ms(self._buffered)

    @property
    def buffered_samples(self) -> int:
        return self._buffered

    @property
    def ready(self) -> bool:
        """True when the next `pop_frame` hands out queued audio (its pre-roll is gathered
        or its spurt is complete): the moment other audio, such as hold audio, gives way."""
        return self._buffered > 0 and (
            not self._holding or self._complete or self._buffered >= self.preroll_samples
        )

    @property
    def is_playing(self) -> bool:
        """True while queued audio remains (also while its pre-roll is being gathered)."""
        return self._buffered > 0

    def _ms(self, samples: int) -> int:
        return samples * 1000 // self.rate


#: Fade length at an underrun: long enough to remove the click, short enough to keep
#: the syllable.
FADE_MS = 4


def _fade_ramp(rate: int) -> NDArray[np.float32]:
    n = max(1, rate * FADE_MS // 1000)
    return np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
