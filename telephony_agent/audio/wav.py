"""Mono PCM16 WAV recording and reading (stdlib ``wave``).

Why the writer syncs the header while it writes: call recordings are written for
minutes, and a process that dies mid-call should still leave a playable file.
Every ``sync_every_s`` of audio the RIFF sizes are patched and the file is
flushed; ``close()`` does it a last time.
"""

from __future__ import annotations

import os
import wave
from types import TracebackType
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

__all__ = ["WavWriter", "read_wav"]


class WavWriter:
    """Streaming writer of a mono 16-bit WAV file; usable as a context manager."""

    def __init__(
        self, path: str | os.PathLike[str], rate: int, *, sync_every_s: float = 1.0
    ) -> None:
        if rate <= 0:
            raise ValueError(f"sample rate must be positive, got {rate}")
        self.path = os.fspath(path)
        self.rate = rate
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        try:
            self._wave = wave.open(self._file, "wb")  # noqa: SIM115 (closed in close())
            self._wave.setnchannels(1)
            self._wave.setsampwidth(2)
            self._wave.setframerate(rate)
            self._wave.writeframes(b"")  # a valid (empty) header right away
        except BaseException:
            self._file.close()
            raise
        self._file.flush()
        self._sync_every = max(1, round(sync_every_s * rate))
        self._unsynced = 0
        self._frames = 0
        self._closed = False

    def write(self, pcm: NDArray[np.int16]) -> None:
        """Append samples (int16 mono)."""
        if self._closed:
            raise ValueError(f"write to closed WAV file {self.path}")
        samples = np.asarray(pcm, dtype=np.int16).reshape(-1)
        if not samples.size:
            return
        self._wave.writeframesraw(samples.astype("<i2", copy=False).tobytes())
        self._frames += samples.size
        self._unsynced += samples.size
        if self._unsynced >= self._sync_every:
            self.sync()

    def sync(self) -> None:
        """Patch the header sizes to what was written so far and flush to the OS."""
        if self._closed:
            return
        self._wave.writeframes(b"")  # rewrites the RIFF/data sizes when they changed
        self._file.flush()
        self._unsynced = 0

    @property
    def frames_written(self) -> int:
        return self._frames

    @property
    def duration_s(self) -> float:
        return self._frames / self.rate

    def close(self) -> None:
        """Finalise the header and close the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._wave.close()
        finally:
            self._file.close()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_wav(path: str | os.PathLike[str]) -> tuple[NDArray[np.int16], int]:
    """Read an integer-PCM WAV as mono int16 (channels averaged) and its sample rate.

    8-, 24- and 32-bit files are converted to 16 bits; anything that is not
    integer PCM raises ``ValueError`` with the reason.
    """
    try:
        with wave.open(os.fspath(path), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{os.fspath(path)}: not a PCM WAV file ({exc})") from exc
    samples = _to_int32_scaled(raw, width, os.fspath(path))
    usable = samples.size - samples.size % channels
    frames = samples[:usable].reshape(-1, channels)
    mono = frames[:, 0] if channels == 1 else frames.sum(axis=1) // channels
    return (mono >> 16).astype(np.int16), rate


def _to_int32_scaled(raw: bytes, width: int, path: str) -> NDArray[np.int64]:
    """Samples as int64 scaled to the 32-bit range (so a >> 16 gives PCM16)."""
    data = np.frombuffer(raw, dtype=np.uint8)
    data = data[: data.size - data.size % width]  # a truncated file may end mid-sample
    if width == 1:  # unsigned 8-bit
        return (data.astype(np.int64) - 128) << 24
    if width == 2:
        return data.view("<i2").astype(np.int64) << 16
    if width == 3:
        triples = data.reshape(-1, 3).astype(np.int64)
        value = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return value << 8
    if width == 4:
        return data.view("<i4").astype(np.int64)
    raise ValueError(f"{path}: unsupported sample width of {width} bytes")
