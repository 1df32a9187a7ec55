"""Streaming resamplers for the two directions of a call.

Why two different ones: the directions have opposite needs.

* Inbound (caller → model) is latency-critical and arrives as a steady 20 ms
  frame stream. :class:`InboundResampler` is a polyphase FIR with kept history:
  a fixed, known group delay of a few milliseconds, exactly ``n * out / in``
  samples out for ``n`` in (no bursts, no clicks at frame boundaries), and one
  small matrix product per frame.
* Outbound (model → caller) arrives in bursts faster than real time, so latency
  inside the resampler does not matter but quality does. :class:`OutboundResampler`
  wraps soxr's HQ streaming resampler and must be flushed at the end of every
  response (and on barge-in) or the tail of each answer stays inside it.

Filter design of the inbound FIR (Kaiser-windowed sinc, computed once per
instance): the prototype runs at ``in_rate * L`` for the rational ratio
``L / M``. With ``f_lo = min(in_rate, out_rate) / 2``:

* passband edge ``0.85 * f_lo`` (3.4 kHz for 8 kHz input: the telephone band),
  ripple ≈ ±0.01 dB;
* stopband from ``1.025 * f_lo`` when upsampling (images of anything up to
  3.9 kHz at 8 kHz are attenuated ≥ 60 dB) or from the output Nyquist when
  downsampling (nothing above it may alias back), attenuation ≥ 63 dB.

The tap count is the smallest that meets this and gives a whole number of output
samples of delay, so :attr:`InboundResampler.delay_ms` is exact: 2.79 ms at
8→24 kHz, 1.42 ms at 16→24 kHz, 1.13 ms at 48→24 kHz.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import soxr
from numpy.lib.stride_tricks import as_strided
from numpy.typing import NDArray

__all__ = [
    "INBOUND_RATES",
    "OUTBOUND_IN_RATES",
    "OUTBOUND_OUT_RATES",
    "InboundResampler",
    "OutboundResampler",
]

INBOUND_RATES = frozenset({8000, 16000, 24000, 48000})
"""Leg rates the inbound resampler is designed and tested for (to 24 kHz)."""
OUTBOUND_IN_RATES = frozenset({8000, 16000, 24000, 44100, 48000})
OUTBOUND_OUT_RATES = frozenset({8000, 16000, 24000, 48000})

_STOPBAND_DB = 64.0
_PASS_FRACTION = 0.85
_UPSAMPLE_STOP_FRACTION = 1.025
_MAX_PHASES = 12
_MAX_CACHED_SIZES = 4


def _as_int16(pcm: NDArray[np.int16]) -> NDArray[np.int16]:
    return np.asarray(pcm, dtype=np.int16).reshape(-1)


def _kaiser_lowpass(
    rate: float, pass_hz: float, stop_hz: float, atten_db: float, delay_multiple: int
) -> NDArray[np.float64]:
    """Linear-phase low-pass at `rate`; (taps - 1) / 2 is a multiple of `delay_multiple`."""
    width = 2.0 * math.pi * (stop_hz - pass_hz) / rate
    taps = math.ceil((atten_db - 7.95) / (2.285 * width)) + 1
    while (taps - 1) % (2 * delay_multiple):
        taps += 1
    beta = 0.1102 * (atten_db - 8.7)
    cutoff = (pass_hz + stop_hz) / 2.0 / rate
    t = np.arange(taps, dtype=np.float64) - (taps - 1) / 2.0
    return 2.0 * cutoff * np.sinc(2.0 * cutoff * t) * np.kaiser(taps, beta)


class InboundResampler:
    """Low-latency streaming resampler with constant output size (caller → model).

    ``process(pcm)`` with ``n`` samples returns exactly ``n * out_rate / in_rate``
    samples whenever that is a whole number (20 ms frames always are); otherwise
    the remainder is carried into the next call, so the total stays exact. The
    output lags the input by :attr:`delay_ms` (the FIR's group delay); before the
    first call the history is silence.
    """

    def __init__(self, in_rate: int, out_rate: int = 24000) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} → {out_rate}")
        g = math.gcd(in_rate, out_rate)
        up, down = out_rate // g, in_rate // g
        if max(up, down) > _MAX_PHASES:
            raise ValueError(
                f"unsupported inbound resampling {in_rate} → {out_rate} Hz "
                f"(ratio {up}/{down}; supported in rates: {sorted(INBOUND_RATES)})"
            )
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._up = up
        self._down = down
        self._passthrough = in_rate == out_rate
        if self._passthrough:
            self._taps_per_phase = 1
            self._span = 1
            self._delay_samples = 0
            self._matrix = np.ones((1, 1), dtype=np.float64)
        else:
            self._build(in_rate, out_rate)
        self._sizes: dict[int, _Scratch] = {}
        self._tail = np.zeros(self._taps_per_phase - 1, dtype=np.float64)

    def _build(self, in_rate: int, out_rate: int) -> None:
        up, down = self._up, self._down
        low_nyquist = min(in_rate, out_rate) / 2.0
        stop = _UPSAMPLE_STOP_FRACTION * low_nyquist if out_rate > in_rate else out_rate / 2.0
        prototype = _kaiser_lowpass(
            float(in_rate * up), _PASS_FRACTION * low_nyquist, stop, _STOPBAND_DB, down
        )
        self._delay_samples = (prototype.size - 1) // (2 * down)
        k = -(-prototype.size // up)
        padded = np.zeros(k * up, dtype=np.float64)
        padded[: prototype.size] = prototype * up
        # Output r of each period of `down` inputs uses input row i_r and polyphase branch p_r.
        rows = [(r * down) // up for r in range(up)]
        phases = [(r * down) % up for r in range(up)]
        span = k + rows[-1]
        matrix = np.zeros((span, up), dtype=np.float64)
        for r in range(up):
            branch = padded[phases[r] :: up]  # h[p + j*up], j = 0..k-1
            matrix[rows[r] : rows[r] + k, r] = branch[::-1]
        self._taps_per_phase = k
        self._span = span
        self._matrix = np.ascontiguousarray(matrix, dtype=np.float64)

    @property
    def delay_ms(self) -> float:
        """Group delay: an input event at t appears in the output at t + delay_ms."""
        return 1000.0 * self._delay_samples / self.out_rate

    @property
    def delay_samples(self) -> int:
        """Group delay in output samples (a whole number by design)."""
        return self._delay_samples

    def reset(self) -> None:
        """Forget the history (a new stream starts, e.g. after a call-leg change)."""
        self._tail = np.zeros(self._taps_per_phase - 1, dtype=np.float64)

    def process(self, pcm: NDArray[np.int16]) -> NDArray[np.int16]:
        """Resample the next chunk of the stream; see the class doc for the output size."""
        x = _as_int16(pcm)
        if self._passthrough:
            return x.copy()
        head = self._tail.size
        scratch = self._scratch(head + x.size)
        buf = scratch.buf
        buf[:head] = self._tail
        buf[head:] = x
        periods = scratch.out.shape[0]
        if periods:
            # One small matrix product: every output sample is a window · polyphase branch.
            np.dot(scratch.windows, self._matrix, out=scratch.out)
        self._tail = buf[periods * self._down :].copy()
        y = scratch.out.reshape(-1)
        np.rint(y, out=y)
        _clip_int16(y)
        return y.astype(np.int16)

    def _scratch(self, total: int) -> _Scratch:
        """Scratch arrays for one extended length (frames repeat, so this is a cache hit)."""
        scratch = self._sizes.get(total)
        if scratch is None:
            periods = max(0, (total - (self._taps_per_phase - 1)) // self._down)
            scratch = _Scratch(total, periods, self._span, self._down, self._up)
            if len(self._sizes) >= _MAX_CACHED_SIZES:
                self._sizes.clear()
            self._sizes[total] = scratch
        return scratch


class _Scratch:
    """Input buffer, the overlapping window view over it, and the output block."""

    __slots__ = ("buf", "out", "windows")

    def __init__(self, total: int, periods: int, span: int, down: int, up: int) -> None:
        self.buf: NDArray[np.float64] = np.zeros(total, dtype=np.float64)
        self.out: NDArray[np.float64] = np.zeros((periods, up), dtype=np.float64)
        step = self.buf.strides[0]
        self.windows: NDArray[np.float64] = as_strided(
            self.buf, shape=(periods, span), strides=(step * down, step), writeable=False
        )


class OutboundResampler:
    """High-quality streaming resampler for model speech (model rate → leg rate).

    Output is bursty (soxr holds back a few tens of milliseconds); call
    :meth:`flush` at the end of each response to get the tail out, and on
    barge-in (then discard what it returns).
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate not in OUTBOUND_IN_RATES or out_rate not in OUTBOUND_OUT_RATES:
            raise ValueError(
                f"unsupported outbound resampling {in_rate} → {out_rate} Hz "
                f"(in: {sorted(OUTBOUND_IN_RATES)}, out: {sorted(OUTBOUND_OUT_RATES)})"
            )
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._passthrough = in_rate == out_rate
        self._stream = self._new_stream()

    def _new_stream(self) -> soxr.ResampleStream | None:
        if self._passthrough:
            return None
        # float32 I/O on sample values as they are: soxr's int16 output path adds TPDF
        # dither, which would turn digital silence into ±1 LSB noise.
        return soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality="HQ")

    def process(self, pcm: NDArray[np.int16]) -> NDArray[np.int16]:
        """Feed the next chunk; returns whatever output is ready (may be empty)."""
        x = _as_int16(pcm)
        if self._stream is None:
            return x.copy()
        if x.size == 0:
            return np.zeros(0, dtype=np.int16)
        return _to_int16(self._stream.resample_chunk(x.astype(np.float32), last=False))

    def flush(self) -> NDArray[np.int16]:
        """Return the held-back tail and start a fresh stream for the next response."""
        if self._stream is None:
            return np.zeros(0, dtype=np.int16)
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._stream = self._new_stream()
        return _to_int16(tail)


def _to_int16(y: NDArray[np.float32]) -> NDArray[np.int16]:
    out = np.rint(y)
    _clip_int16(out)
    return out.astype(np.int16)


def _clip_int16(y: NDArray[np.floating[Any]]) -> None:
    """Clip to the int16 range in place: two ufuncs, the same values as `np.clip`, which
    spends more in its Python-level argument checks than in the work (per packet)."""
    np.minimum(y, 32767.0, out=y)
    np.maximum(y, -32768.0, out=y)
