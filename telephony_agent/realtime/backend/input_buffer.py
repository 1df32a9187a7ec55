"""The server side input audio buffer: caller audio not yet committed to an item.

Kept as a list of chunks with the absolute sample index of its first sample, so VAD
positions (absolute) map onto it without copying, and so an idle line costs constant
memory: while nobody speaks only the prefix-padding tail is retained.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

_EMPTY = np.zeros(0, dtype=np.int16)


class Pcm16Joiner:
    """Appends may split a PCM16 sample across two messages: the odd byte waits for the
    next one instead of shifting every later sample by a byte."""

    def __init__(self) -> None:
        self._odd_byte = b""

    def join(self, raw: bytes) -> NDArray[np.int16]:
        raw = self._odd_byte + raw
        if len(raw) % 2:
            self._odd_byte, raw = raw[-1:], raw[:-1]
        else:
            self._odd_byte = b""
        return np.frombuffer(raw, dtype="<i2").astype(np.int16, copy=False)


class InputBuffer:
    def __init__(self) -> None:
        self._chunks: list[NDArray[np.int16]] = []
        self._len = 0
        self.start = 0
        """Absolute sample index of the first buffered sample."""

    def __len__(self) -> int:
        return self._len

    @property
    def end(self) -> int:
        """Absolute sample index one past the last buffered sample."""
        return self.start + self._len

    def append(self, pcm: NDArray[np.int16]) -> None:
        if len(pcm):
            self._chunks.append(pcm)
            self._len += len(pcm)

    def _joined(self) -> NDArray[np.int16]:
        if not self._chunks:
            return _EMPTY
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0]

    def drop_before(self, sample: int) -> None:
        """Forget audio before absolute index `sample` (no-op if already gone)."""
        cut = min(max(0, sample - self.start), self._len)
        if cut == 0:
            return
        rest = self._joined()[cut:]
        self._chunks = [rest] if len(rest) else []
        self._len = len(rest)
        self.start += cut

    def take(self, until: int) -> NDArray[np.int16]:
        """Remove and return everything before absolute index `until`."""
        cut = min(max(0, until - self.start), self._len)
        data = self._joined()
        head, rest = data[:cut].copy(), data[cut:]
        self._chunks = [rest] if len(rest) else []
        self._len = len(rest)
        self.start += cut
        return head

    def take_all(self) -> NDArray[np.int16]:
        return self.take(self.end)

    def clear(self) -> None:
        self.start = self.end
        self._chunks = []
        self._len = 0
