"""Signal measurements shared by tests and benchmarks.

Why here and not in the tests: "did the caller hear the agent's audio, how
late, how loud" is the acceptance criterion of every end-to-end test and
benchmark, so the measurement must be one well-tested implementation.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["best_lag_correlation", "rms_dbfs"]

_FULL_SCALE = 32768.0


def best_lag_correlation(a: ArrayLike, b: ArrayLike, max_lag: int) -> tuple[float, int]:
    """Peak of the normalised cross-correlation of `a` and `b` within ±max_lag samples.

    Returns ``(correlation, lag)``. ``lag > 0`` means `b` is `a` delayed by
    ``lag`` samples (``b[n + lag] ≈ a[n]``). The correlation is normalised by the
    total energies of both signals (``sum(a[n] * b[n + lag]) / sqrt(Ea * Eb)``, the
    classic "coeff" normalisation): an identical, scaled or zero-padded delayed copy
    scores 1.0, an inverted copy -1.0, independent noise ≈ 0, and energy in either
    signal that the other does not explain lowers the score. (Normalising by the
    overlap's energy instead would let a one-sample overlap at an extreme lag score
    ±1.) The peak is the largest magnitude, sign kept. Computed with one FFT product.
    """
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    energy = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    if energy == 0.0:  # empty or silent on one side: nothing to align
        return 0.0, 0
    # Lags with any overlap at all: -(len(a) - 1) .. len(b) - 1.
    max_lag = max(0, int(max_lag))
    lags = np.arange(-min(max_lag, x.size - 1), min(max_lag, y.size - 1) + 1)

    size = _fft_size(x.size + y.size - 1)
    spectrum = np.conj(np.fft.rfft(x, size)) * np.fft.rfft(y, size)
    full = np.fft.irfft(spectrum, size)  # full[k mod size] = sum_n x[n] * y[n + k]
    correlation = np.clip(full[lags % size] / energy, -1.0, 1.0)
    best = int(np.argmax(np.abs(correlation)))
    return float(correlation[best]), int(lags[best])


def rms_dbfs(pcm: ArrayLike) -> float:
    """RMS level in dB relative to int16 full scale (32768); a full-scale sine is -3.01 dB.

    Silence (or an empty signal) is ``-inf``.
    """
    x = np.asarray(pcm, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(x * x)))
    if rms == 0.0:
        return -math.inf
    return 20.0 * math.log10(rms / _FULL_SCALE)


def _fft_size(n: int) -> int:
    """A fast FFT length >= n (powers of two, or 3·2^k / 5·2^k when those are closer)."""
    best = 1 << max(0, (n - 1).bit_length())
    for factor in (3, 5):
        candidate = factor
        while candidate < n:
            candidate <<= 1
        best = min(best, candidate)
    return best
