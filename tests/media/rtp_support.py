"""Shared pieces for the RTP tests: test signals, packet builders, alignment and SNR."""

from __future__ import annotations

import math
from functools import cache
from importlib.resources import files
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from telephony_agent.media.audiofile import decode_audio_file
from telephony_agent.media.rtp.wire import RtpPacket

SSRC = 0x1234_5678


@cache
def speech(rate: int) -> NDArray[np.int16]:
    """The packaged spoken sentence at `rate` (read-only, cached)."""
    path = Path(str(files("telephony_agent") / "samples" / "book_flight.wav"))
    pcm = decode_audio_file(path, rate)
    pcm.flags.writeable = False
    return pcm


def sine(
    rate: int, seconds: float, freq: float = 440.0, level: float = 8000.0
) -> NDArray[np.int16]:
    n = round(rate * seconds)
    return (level * np.sin(2 * math.pi * freq * np.arange(n) / rate)).astype(np.int16)


def frames_of(pcm: NDArray[np.int16], n: int) -> NDArray[np.int16]:
    """`pcm` cut to whole frames of `n` samples, as rows."""
    return pcm[: pcm.size - pcm.size % n].reshape(-1, n)


def rtp(
    seq: int,
    ts: int,
    *,
    pt: int = 0,
    ssrc: int = SSRC,
    payload: bytes = b"\xff" * 160,
    marker: bool = False,
) -> RtpPacket:
    return RtpPacket(
        payload_type=pt,
        marker=int(marker),
        sequence_number=seq & 0xFFFF,
        timestamp=ts & 0xFFFFFFFF,
        ssrc=ssrc,
        payload=payload,
    )


def best_delay(reference: NDArray[np.int16], output: NDArray[np.int16], max_delay: int) -> int:
    """Lag of `output` behind `reference` that maximises their cross-correlation."""
    span = min(reference.size, output.size) - max_delay
    ref = reference[:span].astype(np.float64)
    out = output.astype(np.float64)
    scores = [float(np.dot(ref, out[d : d + span])) for d in range(max_delay)]
    return int(np.argmax(scores))


def aligned(
    reference: NDArray[np.int16], output: NDArray[np.int16], max_delay: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    delay = best_delay(reference, output, max_delay)
    span = min(reference.size, output.size - delay) - max_delay
    return (
        reference[:span].astype(np.float64),
        output[delay : delay + span].astype(np.float64),
    )


def snr_db(reference: NDArray[np.float64], output: NDArray[np.float64]) -> float:
    noise = float(np.sum((reference - output) ** 2))
    return 10.0 * math.log10(float(np.sum(reference**2)) / max(noise, 1e-9))
