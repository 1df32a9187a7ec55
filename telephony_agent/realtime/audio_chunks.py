"""Whole samples in, fixed-size appends out, and whole samples back from ragged deltas.

Why apart from the protocol: both helpers are pure byte arithmetic that the protocol,
the Call and the tests share, and they must be right for PCM16 (two bytes a sample, so
a delta may split a sample) and for G.711 (one byte a sample, nothing to split).
"""

from __future__ import annotations


class SampleAligner:
    """Whole PCM16 samples per item out of deltas that may split a sample.

    `AudioDelta.audio` is byte-exact (a delta may end in the middle of a sample). This
    helper keeps one odd trailing byte per item and prepends it to that item's next
    delta, so a consumer that converts each push to int16 never sees half a sample.
    Switching to another item drops the previous item's odd byte (it cannot be played).
    """

    def __init__(self) -> None:
        self._item: str | None = None
        self._carry = b""

    def push(self, item_id: str, data: bytes) -> bytes:
        if item_id != self._item:
            self._item = item_id
            self._carry = b""
        if self._carry:
            data = self._carry + data
        usable = len(data) & ~1
        self._carry = data[usable:]
        return data[:usable]

    def reset(self) -> None:
        self._item = None
        self._carry = b""


class AudioChunker:
    """Re-chunks uplink audio into fixed `chunk_bytes` pieces; never yields an empty one.

    A trailing partial sample (half a PCM16 sample) always waits for more input, so
    appended audio stays sample-aligned whatever the caller hands us. G.711 has one byte
    per sample (`sample_bytes=1`): every byte is a whole sample.
    """

    def __init__(self, chunk_bytes: int, sample_bytes: int = 2) -> None:
        if sample_bytes not in (1, 2):
            raise ValueError(f"sample_bytes must be 1 or 2, got {sample_bytes}")
        if chunk_bytes <= 0 or chunk_bytes % sample_bytes:
            raise ValueError(
                f"chunk_bytes must be a positive multiple of {sample_bytes}, got {chunk_bytes}"
            )
        self.chunk_bytes = chunk_bytes
        self.sample_bytes = sample_bytes
        self._pending = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        """Full chunks now available, in order."""
        if not self._pending and len(data) == self.chunk_bytes:
            # The steady state (one 20 ms frame in, one chunk out): no copy through the
            # pending buffer.
            return [bytes(data)]
        self._pending += data
        n = len(self._pending) // self.chunk_bytes
        if n == 0:
            return []
        size = self.chunk_bytes
        view = bytes(self._pending[: n * size])
        del self._pending[: n * size]
        return [view[i * size : (i + 1) * size] for i in range(n)]

    def flush(self) -> bytes:
        """The whole samples still pending (possibly empty); a partial sample stays."""
        usable = len(self._pending) - len(self._pending) % self.sample_bytes
        out = bytes(self._pending[:usable])
        del self._pending[:usable]
        return out

    def clear(self) -> int:
        """Drop everything pending; returns the number of bytes dropped."""
        dropped = len(self._pending)
        self._pending.clear()
        return dropped

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)
