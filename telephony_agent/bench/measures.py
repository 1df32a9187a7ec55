"""What `bench` computes from raw observations: pacing, loss, latency and fidelity.

Pure functions on numpy arrays, with no sockets and no clocks, so each figure in the
table can be checked against synthetic data whose answer is known (a run can only be
trusted if its arithmetic can fail a test).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FRAME_S = 0.02
"""Every RTP packet of a bench call carries 20 ms."""
GAP_S = 0.04
"""An inter-arrival longer than this is a gap the caller hears."""
LATENCY_TOLERANCE_S = 0.0005
"""How far before its packet's send time an append may appear to arrive (clock reads)."""
SEGMENT_MS = 20
SNR_FLOOR_DB = -10.0
SNR_CEILING_DB = 80.0
"""Segmental SNR clamps each segment, as the usual definition does, so one silent or
one perfect segment does not dominate the mean."""
ACTIVE_LEVEL = 100.0
"""RMS (int16 units, about -50 dBFS) below which an ideal segment is silence and skipped."""
CLICK_RATIO = 4.0
CLICK_FLOOR = 3000.0
"""A click: a sample step this many times the ideal's largest nearby step, plus a floor
(int16 units), so steps the speech itself makes never count."""


def percentile(values: Sequence[float] | NDArray[np.float64], q: float) -> float:
    """The q-th percentile, NaN for no values (a figure that was not measured)."""
    data = np.asarray(values, dtype=np.float64)
    return float(np.percentile(data, q)) if data.size else math.nan


@dataclass(frozen=True)
class Pacing:
    """How evenly one call's packets arrived, and how many never did."""

    jitter_ms: NDArray[np.float64]
    """|inter-arrival - 20 ms| for every consecutive pair of arrivals."""
    gaps: int
    """Inter-arrivals longer than 40 ms."""
    expected: int
    lost: int


def pacing(arrivals_s: NDArray[np.float64], sequence: NDArray[np.int64]) -> Pacing:
    """Pacing of one call from arrival times (seconds) and RTP sequence numbers, in order.

    Loss counts sequence numbers missing between the first and the last seen (16-bit
    wrap-around unwrapped); duplicates do not hide a loss.
    """
    if arrivals_s.size < 2:
        return Pacing(np.zeros(0), 0, int(arrivals_s.size), 0)
    inter = np.diff(arrivals_s)
    jitter = np.abs(inter - FRAME_S) * 1000.0
    gaps = int(np.count_nonzero(inter > GAP_S))
    steps = np.diff(sequence.astype(np.int64))
    steps = np.where(steps < -32768, steps + 65536, steps)
    steps = np.where(steps > 32768, steps - 65536, steps)
    unwrapped = np.concatenate(([0], np.cumsum(steps)))
    expected = int(unwrapped.max() - unwrapped.min() + 1)
    lost = expected - int(np.unique(unwrapped).size)
    return Pacing(jitter, gaps, expected, lost)


def inbound_latency(
    send_times: NDArray[np.float64],
    arrivals: NDArray[np.float64],
    seconds: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Per append: its arrival at the model minus when its newest audio left the caller.

    `send_times[k]` is when the caller sent packet k (20 ms each); the model received
    appends at `arrivals` carrying `seconds` each, in order. An append's audio ends at
    its cumulative position in the stream; that position lies in packet
    `k = floor(position / 20 ms) + skipped`, where `skipped` is how many packets the
    agent dropped before its first append (unknown: the call may start before the media
    does). Since no append can arrive before its audio was sent, `skipped` is the largest
    value that keeps every latency non-negative. A constant loss of whole 20 ms packets
    after the start shows up as added latency, which is how a caller would hear it.
    """
    if send_times.size == 0 or arrivals.size == 0:
        return np.zeros(0)
    ends = np.cumsum(seconds)
    base = np.floor(ends / FRAME_S - 1e-6).astype(np.int64)

    def latencies(skipped: int) -> NDArray[np.float64]:
        index = base + skipped
        keep = index < send_times.size
        return arrivals[keep] - send_times[index[keep]]

    def valid(skipped: int) -> bool:
        found = latencies(skipped)
        return found.size > 0 and float(found.min()) >= -LATENCY_TOLERANCE_S

    low, high = 0, int(send_times.size - 1)
    if not valid(low):
        return latencies(low)
    while low < high:
        middle = (low + high + 1) // 2
        if valid(middle):
            low = middle
        else:
            high = middle - 1
    return latencies(low)


def align(heard: NDArray[np.float64], ideal: NDArray[np.float64]) -> int:
    """The offset into `ideal` at which `heard` matches it best (FFT cross-correlation)."""
    size = 1 << math.ceil(math.log2(heard.size + ideal.size))
    spectrum = np.fft.rfft(ideal, size) * np.conj(np.fft.rfft(heard, size))
    correlation = np.fft.irfft(spectrum, size)[: ideal.size - heard.size + 1]
    return int(np.argmax(correlation))


def segmental_snr(heard: NDArray[np.float64], ideal: NDArray[np.float64], rate: int) -> float:
    """Mean per-segment SNR (dB) of `heard` against the aligned `ideal`, speech segments only."""
    segment = rate * SEGMENT_MS // 1000
    count = min(heard.size, ideal.size) // segment
    if count == 0:
        return math.nan
    signal = ideal[: count * segment].reshape(count, segment)
    noise = signal - heard[: count * segment].reshape(count, segment)
    power = np.mean(signal**2, axis=1)
    active = power > ACTIVE_LEVEL**2
    if not np.any(active):
        return math.nan
    error = np.maximum(np.mean(noise**2, axis=1), 1e-9)
    snr = 10.0 * np.log10(power[active] / error[active])
    return float(np.mean(np.clip(snr, SNR_FLOOR_DB, SNR_CEILING_DB)))


def clicks(heard: NDArray[np.float64], ideal: NDArray[np.float64]) -> int:
    """Sample steps in `heard` far above any step the aligned `ideal` makes nearby."""
    count = min(heard.size, ideal.size)
    if count < 6:
        return 0
    step_heard = np.abs(np.diff(heard[:count]))
    step_ideal = np.abs(np.diff(ideal[:count]))
    padded = np.pad(step_ideal, 2, mode="edge")
    nearby = np.max(np.lib.stride_tricks.sliding_window_view(padded, 5), axis=1)
    return int(np.count_nonzero(step_heard > CLICK_RATIO * nearby + CLICK_FLOOR))


@dataclass(frozen=True)
class Fidelity:
    snr_db: float
    """Median segmental SNR over the windows compared."""
    clicks: int


def fidelity(
    heard: NDArray[np.int16], ideal: NDArray[np.int16], rate: int, windows: int = 5
) -> Fidelity:
    """What a caller heard against the ideal rendering of the model's audio.

    The model says `ideal` over and over, so `heard` is compared in one-second windows,
    each aligned on its own against two copies of `ideal` end to end (a window may span
    the seam between two responses). Windows where the ideal is silence are skipped.
    """
    window = rate
    loop = np.tile(ideal.astype(np.float64), 2 + window // max(ideal.size, 1))
    signal = heard.astype(np.float64)
    scores: list[float] = []
    found = 0
    starts = range(0, max(0, signal.size - window + 1), window)
    for start in list(starts)[:windows]:
        piece = signal[start : start + window]
        offset = align(piece, loop)
        matched = loop[offset : offset + window]
        score = segmental_snr(piece, matched, rate)
        if not math.isnan(score):
            scores.append(score)
            found += clicks(piece, matched)
    return Fidelity(float(np.median(scores)) if scores else math.nan, found)
