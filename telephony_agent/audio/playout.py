"""The outbound playout queue: model audio in, one fixed-size frame per clock tick out.

Why it keeps per-item accounting: on barge-in the Realtime conversation item
must be truncated at what the caller actually heard, never at what was merely
received. Audio arrives in bursts much faster than real time, so "received" and
"played" differ by seconds; the only place that knows the truth is the queue
that hands out frames. Accounting is exact to the sample, also when one frame
carries the end of one item and the start of the next.

Cost is per chunk, not per sample: the queue is a deque of the pushed numpy
arrays plus a read offset into the first one, so a frame is usually one slice.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Frame", "PlayoutBuffer"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of outbound audio.

    ``item_id`` is the item that was playing at the end of the frame (the last
    queued sample in it), or None for pure silence or audio pushed without an
    item. ``speech`` is False only when the frame is all padding.
    """

    pcm: NDArray[np.int16]
    item_id: str | None
    speech: bool


class PlayoutBuffer:
    """FIFO of PCM16 chunks tagged with Realtime item ids, popped in fixed frames."""

    def __init__(self, rate: int, frame_ms: int = 20) -> None:
        if rate <= 0 or frame_ms <= 0 or (rate * frame_ms) % 1000:
            raise ValueError(f"{frame_ms} ms at {rate} Hz is not a whole number of samples")
        self.rate = rate
        self.frame_ms = frame_ms
        self.frame_samples = rate * frame_ms // 1000
        self._chunks: deque[tuple[NDArray[np.int16], str | None]] = deque()
        self._offset = 0
        self._buffered = 0
        self._received: dict[str, int] = {}
        self._played: dict[str, int] = {}

    # ------------------------------------------------------------------ queue

    def push(self, pcm: NDArray[np.int16], item_id: str | None) -> None:
        """Queue audio (copied) for `item_id`; None means audio outside any Realtime item."""
        chunk = np.array(pcm, dtype=np.int16, copy=True).reshape(-1)
        if item_id is not None:
            self._received[item_id] = self._received.get(item_id, 0) + chunk.size
        if chunk.size:
            self._chunks.append((chunk, item_id))
            self._buffered += chunk.size

    def pop_frame(self) -> Frame:
        """Exactly one frame: queued audio first, zero padding when the queue runs dry."""
        n = self.frame_samples
        if not self._buffered:
            return Frame(np.zeros(n, dtype=np.int16), None, False)
        chunk, item_id = self._chunks[0]
        start = self._offset
        if chunk.size - start >= n:
            self._take(item_id, n)
            return Frame(chunk[start : start + n], item_id, True)
        pcm = np.zeros(n, dtype=np.int16)
        filled = 0
        while filled < n and self._chunks:
            chunk, item_id = self._chunks[0]
            start = self._offset
            count = min(n - filled, chunk.size - start)
            pcm[filled : filled + count] = chunk[start : start + count]
            filled += count
            self._take(item_id, count)
        return Frame(pcm, item_id, True)

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
    def is_playing(self) -> bool:
        """True while queued audio remains."""
        return self._buffered > 0

    def _ms(self, samples: int) -> int:
        return samples * 1000 // self.rate
