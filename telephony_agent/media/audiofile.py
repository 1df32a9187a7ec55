"""Decode any audio file PyAV can read into mono PCM16 at a chosen rate.

`ask` accepts whatever the user has (WAV, MP3, OGG, M4A, raw containers); PyAV's
bundled FFmpeg does the demuxing, decoding and the one-off resample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from telephony_agent.errors import InputFileError

#: Headerless telephony files recognised by their extension.
_RAW_G711 = {".ulaw": "mulaw", ".ul": "mulaw", ".mulaw": "mulaw", ".alaw": "alaw", ".al": "alaw"}


def decode_audio_file(path: Path, rate: int) -> NDArray[np.int16]:
    """Return the file's first audio stream as mono int16 at `rate`, or raise InputFileError."""
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if not path.is_file():
        raise InputFileError(f"{path}: not a regular file")
    raw_format = _RAW_G711.get(path.suffix.lower())
    # Imported here: a `serve` that plays no recording never needs FFmpeg's libraries.
    import av

    try:
        if raw_format is not None:
            # Headerless G.711 (what SIP test tools play) carries no rate; telephony is 8 kHz.
            container = av.open(str(path), format=raw_format, options={"sample_rate": "8000"})
        else:
            container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise InputFileError(f"{path}: not a readable audio file ({_reason(exc)})") from None
    chunks: list[NDArray[np.int16]] = []
    try:
        if not container.streams.audio:
            raise InputFileError(f"{path}: contains no audio stream")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
    except av.error.FFmpegError as exc:
        raise InputFileError(f"{path}: cannot decode audio ({_reason(exc)})") from None
    finally:
        container.close()
    if not chunks:
        raise InputFileError(f"{path}: contains no audio samples")
    pcm = np.concatenate(chunks)
    if pcm.size == 0:
        raise InputFileError(f"{path}: contains no audio samples")
    return pcm


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip() or type(exc).__name__
