"""Is the caller's audio the agent's own voice coming back? An echo verdict per frame.

Why: a speakerphone, a PBX hybrid or a cheap handset sends part of what the agent says
back up the line, delayed by tens to hundreds of milliseconds and quieter. The
provider's VAD cannot tell that from the caller speaking, so without a guard the agent
interrupts itself. Here the caller's audio is compared with what the agent actually
played (the frames the media tick sent, after any ducking):

* an echo path is found by normalised cross-correlation of the last 160 ms of caller
  audio with the played history over every plausible delay (0 to the window), all
  delays at once with one FFT, on both signals decimated to 4 kHz and pre-emphasised
  (the correlation peak is then the echo's delay, not the shared low-frequency shape
  of two voices);
* the path's gain is checked against the far-end reference at that delay: an echo
  path only attenuates, so audio much louder than what was played is the caller;
* each new frame must be explained by the path: after subtracting the predicted echo,
  less than half of its energy above the line noise may be left. The first frame in
  which the caller talks over the echo (double talk) is therefore not echo, even
  though the window as a whole still correlates.

Cost is paid only while the agent is audible and the line carries more than noise;
the full search runs every fourth frame while a path holds (every other one while
none does), the frames in between reuse the path found (one short dot product).
Sans-I/O: `played` on each tick (a ring write, no shifting), `heard` on each inbound
frame.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from numpy.typing import NDArray

__all__ = ["ANALYSIS_RATE", "EchoGuard"]

#: Both signals are compared at this rate: enough for the 300-2000 Hz core of speech.
ANALYSIS_RATE = 4000
#: Length of the caller audio compared with the agent's, per search.
ANALYSIS_MS = 160
#: First-order pre-emphasis applied to both signals before comparing them.
PRE_EMPHASIS = 0.9
#: Correlation at or above this (at the best delay) means an echo path exists.
NCC_THRESHOLD = 0.5
#: An echo is at most this much louder than what was played (dB); louder is the caller.
MAX_ECHO_GAIN_DB = 6.0
#: A frame is echo only if the path leaves less than this fraction of its energy
#: (above the line noise) unexplained; more is the caller's own voice on top.
UNEXPLAINED_MAX = 0.5
#: Played audio quieter than this (dBFS over the window) cannot echo audibly.
REFERENCE_FLOOR_DBFS = -55.0
#: Inbound frames less than this far above the line noise are not judged (dB).
JUDGE_ABOVE_NOISE_DB = 3.0
#: While an echo path holds, it is searched for again every this many frames (the
#: frames between reuse it); without one, every this many frames at most.
SEARCH_EVERY_HELD = 4
SEARCH_EVERY_NONE = 2
#: The line's noise floor is the quietest frame of this many (two seconds)...
NOISE_FRAMES = 100
#: ...raised by this factor: the minimum of many noise frames sits about 2 dB under
#: the noise's mean power.
NOISE_MIN_BIAS = 1.6
#: Until two seconds have been heard, the floor is at most this (dBFS).
NOISE_START_DBFS = -70.0

_FULL_SCALE_SQ = 32768.0**2


class _Ring:
    """A fixed-length history with a running energy; pushing never moves old samples."""

    def __init__(self, size: int) -> None:
        self.buf = np.zeros(size, dtype=np.float64)
        self.pos = 0  # where the next sample goes (= the oldest sample)
        self.energy = 0.0
        self._pushes = 0

    def push(self, new: NDArray[np.float64]) -> None:
        size = self.buf.size
        k = new.size
        if k >= size:
            self.buf[:] = new[-size:]
            self.pos = 0
            self.energy = float(np.dot(self.buf, self.buf))
            return
        end = self.pos + k
        if end <= size:
            old = self.buf[self.pos : end]
            self.energy += float(np.dot(new, new) - np.dot(old, old))
            self.buf[self.pos : end] = new
        else:
            first = size - self.pos
            self.push(new[:first])
            self.push(new[first:])
            return
        self.pos = end % size
        self._pushes += 1
        if self._pushes % 64 == 0 or self.energy < 0.0:  # no drift from running sums
            self.energy = float(np.dot(self.buf, self.buf))

    def ordered(self) -> NDArray[np.float64]:
        """The history oldest first (a copy)."""
        return np.concatenate((self.buf[self.pos :], self.buf[: self.pos]))

    def tail(self, count: int, skip: int) -> NDArray[np.float64]:
        """`count` samples ending `skip` samples before the newest one."""
        size = self.buf.size
        index = (self.pos - skip - count + np.arange(count)) % size
        out: NDArray[np.float64] = self.buf[index]
        return out


class EchoGuard:
    """Keeps the last `window_ms` of played audio and judges each inbound frame."""

    def __init__(self, rate: int, window_ms: int = 600) -> None:
        if rate % ANALYSIS_RATE:
            raise ValueError(f"{rate} Hz is not a multiple of {ANALYSIS_RATE} Hz")
        self.rate = rate
        self.window_ms = window_ms
        self._factor = rate // ANALYSIS_RATE
        self._analysis = ANALYSIS_RATE * ANALYSIS_MS // 1000
        self._max_delay = ANALYSIS_RATE * window_ms // 1000
        self._ref = _Ring(self._analysis + self._max_delay)
        self._heard = _Ring(self._analysis)
        # Only lags 0..ref - analysis are read, where a circular correlation of the
        # reference's own length never wraps: no zero padding beyond it is needed.
        self._nfft = _fast_size(self._ref.buf.size)
        self._cum = np.zeros(self._ref.buf.size + 1, dtype=np.float64)
        self._emphasis = [0.0, 0.0]  # the last sample of each stream, for pre-emphasis
        self._decimators: dict[int, NDArray[np.float64]] = {}
        #: Recent frame powers, and the line noise's mean square (see `_track_noise`).
        start = _FULL_SCALE_SQ * 10 ** (NOISE_START_DBFS / 10)
        self._powers: deque[float] = deque([start], maxlen=NOISE_FRAMES)
        self._noise = 0.0
        #: The echo path last found: (delay in analysis samples, gain), or None.
        self._path: tuple[int, float] | None = None
        self._since_search = SEARCH_EVERY_NONE
        #: The last search's best correlation and delay (for logs and tests).
        self.last_ncc = 0.0
        self.last_delay_ms = 0.0
        #: Full searches run, for cost accounting.
        self.searches = 0

    # ------------------------------------------------------------------ input

    def played(self, pcm: NDArray[np.int16]) -> None:
        """One frame the agent sent (silence included: it keeps the timeline)."""
        if self._ref.energy == 0.0 and not pcm.any():
            return  # silence into silence: nothing to remember
        self._ref.push(self._decimate(pcm, 0))

    @property
    def reference_active(self) -> bool:
        """The agent was audible within the window: its echo may still be arriving."""
        return _dbfs(self._ref.energy, self._ref.buf.size) > REFERENCE_FLOOR_DBFS

    def heard(self, pcm: NDArray[np.int16]) -> bool:
        """One inbound frame; True when it is the agent's echo."""
        new = self._decimate(pcm, 1)
        if new.size == 0:
            return False
        self._heard.push(new)
        power = float(np.dot(new, new)) / new.size
        self._track_noise(power)
        self._since_search += 1
        if not self.reference_active:
            self._path = None
            return False
        if power < self._noise * 10 ** (JUDGE_ABOVE_NOISE_DB / 10):
            return False  # line noise: neither echo nor speech
        every = SEARCH_EVERY_NONE if self._path is None else SEARCH_EVERY_HELD
        if self._since_search >= every:
            self._path = self._search()
        if self._path is None:
            return False
        delay, gain = self._path
        residual = new - gain * self._ref.tail(new.size, delay)
        noise = self._noise * new.size
        above = float(np.dot(new, new)) - noise
        unexplained = float(np.dot(residual, residual)) - noise
        return unexplained <= UNEXPLAINED_MAX * max(above, 0.0)

    # ------------------------------------------------------------------ internals

    def _search(self) -> tuple[int, float] | None:
        """The echo path: the delay where the caller audio best matches what was
        played, and its gain; None when nothing played explains it."""
        self._since_search = 0
        self.searches += 1
        x = self._heard.ordered()
        ref = self._ref.ordered()
        n = x.size
        x_energy = float(np.dot(x, x))
        if x_energy <= 0.0:
            return None
        spectrum = np.fft.rfft(ref, self._nfft) * np.conj(np.fft.rfft(x, self._nfft))
        # corr[k] = sum_i x[i] * ref[i + k]; the echo delay is (ref.size - n) - k.
        corr = np.fft.irfft(spectrum, self._nfft)[: ref.size - n + 1]
        cum = self._cum
        np.cumsum(ref * ref, out=cum[1:])
        seg_energy = np.maximum(cum[n:] - cum[:-n], 1e-9)
        ncc = corr / np.sqrt(seg_energy * x_energy)
        best = int(np.argmax(ncc))
        delay = ref.size - n - best
        self.last_ncc = float(ncc[best])
        self.last_delay_ms = delay * 1000 / ANALYSIS_RATE
        if self.last_ncc < NCC_THRESHOLD:
            return None
        gain = float(corr[best]) / float(seg_energy[best])
        if 20.0 * np.log10(max(gain, 1e-9)) > MAX_ECHO_GAIN_DB:
            return None
        return delay, gain

    def _decimate(self, pcm: NDArray[np.int16], stream: int) -> NDArray[np.float64]:
        """To the analysis rate (block means), then pre-emphasised; state per stream.

        Both steps are one linear map of the frame, so they are one matrix product (see
        `_decimator`) instead of half a dozen small numpy calls per 20 ms frame.
        """
        n = pcm.size - pcm.size % self._factor
        if n == 0:
            return np.zeros(0, dtype=np.float64)
        matrix = self._decimators.get(n)
        if matrix is None:
            if len(self._decimators) >= 4:
                self._decimators.clear()
            matrix = self._decimators[n] = _decimator(n, self._factor)
        y: NDArray[np.float64] = np.dot(matrix, pcm[:n])
        out = y[:-1]
        out[0] -= PRE_EMPHASIS * self._emphasis[stream]
        self._emphasis[stream] = float(y[-1])
        return out

    def _track_noise(self, power: float) -> None:
        """The line's noise floor: the quietest recent frame, so the pauses between words
        set it and speech or echo never become "noise"."""
        self._powers.append(power)
        self._noise = min(self._powers) * NOISE_MIN_BIAS


def _decimator(n: int, factor: int) -> NDArray[np.float64]:
    """The matrix that takes `n` samples to their `factor`-block means, pre-emphasised
    within the frame (the first output's predecessor, from the previous frame, is the
    caller's to subtract), plus one last row: the frame's last block mean, unemphasised."""
    m = n // factor
    matrix = np.zeros((m + 1, n), dtype=np.float64)
    columns = np.arange(n)
    block = columns // factor
    matrix[block, columns] = 1.0 / factor
    matrix[block[:-factor] + 1, columns[:-factor]] = -PRE_EMPHASIS / factor
    matrix[m, columns[-factor:]] = 1.0 / factor
    return matrix


def _fast_size(n: int) -> int:
    """The smallest 2^a * 3^b >= n: FFT sizes the transform handles fastest."""
    best = 1 << max(0, (n - 1).bit_length())
    three = 1
    while three < best:
        size = three << max(0, (-(-n // three) - 1).bit_length())
        best = min(best, size)
        three *= 3
    return best


def _dbfs(energy: float, count: int) -> float:
    if energy <= 0.0 or count <= 0:
        return -200.0
    return float(10.0 * np.log10(energy / count / _FULL_SCALE_SQ))
