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

Cost is paid only for frames whose verdict is asked for, while the agent is audible
and the line carries more than noise; the full search runs every fourth frame while a
path holds (every other one while none does), the frames in between reuse the path
found (one short dot product). Sans-I/O: `played` on each tick and `listen` on each
inbound frame (ring writes, no shifting); `verdict`/`verdicts` judge what was heard,
after the fact if need be; `heard` is `listen` plus `verdict`.
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

__all__ = ["ANALYSIS_RATE", "EchoGuard"]

#: Inbound audio is judged in frames of this length (the turn guard cuts it so); the
#: history kept for judging after the fact is sized in such frames.
FRAME_MS = 20
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
    """A history of `window` samples plus `spare` older ones, addressed by absolute
    sample number.

    Why the spare: frames are judged after the fact (see `EchoGuard.verdicts`), so the
    audio around a frame heard a few hundred milliseconds ago must still be here.
    Pushing never moves old samples, and nothing is computed on a push: energies are
    worked out when a judgement needs them.
    """

    def __init__(self, window: int, spare: int) -> None:
        self.window = window
        self.spare = max(1, spare)
        self.buf = np.zeros(window + self.spare, dtype=np.float64)
        #: Samples ever pushed: the absolute number of the next one.
        self.total = 0

    def push(self, new: NDArray[np.float64]) -> None:
        size = self.buf.size
        if new.size > size:
            new = new[-size:]
            self.total += new.size - size
        at = self.total % size
        first = min(new.size, size - at)
        self.buf[at : at + first] = new[:first]
        self.buf[: new.size - first] = new[first:]
        self.total += new.size

    def holds(self, start: int) -> bool:
        """Whether samples from absolute number `start` on are still in the history."""
        return self.total - start <= self.buf.size

    def energy(self, end: int) -> float:
        """The energy of the `window` samples before absolute number `end`."""
        window = self.span(end - self.window, end)
        return float(np.dot(window, window))

    def span(self, start: int, end: int) -> NDArray[np.float64]:
        """Samples `start` to `end` (absolute, end excluded); before the first push they
        are silence. A view when it can be: use it before the next push."""
        if start < 0:
            zeros = np.zeros(min(-start, end - start), dtype=np.float64)
            if end <= 0:
                return zeros
            return np.concatenate((zeros, self.span(0, end)))
        size = self.buf.size
        at = start % size
        count = end - start
        if at + count <= size:
            return self.buf[at : at + count]
        return np.concatenate((self.buf[at:], self.buf[: at + count - size]))


class _Heard(NamedTuple):
    """What judging one inbound frame needs, recorded when it was heard."""

    number: int
    heard_end: int
    ref_end: int
    size: int
    power: float


class EchoGuard:
    """Keeps the last `window_ms` of played audio and judges inbound frames.

    Judging is on demand: `listen` records a frame (a ring write and its level), and a
    verdict is worked out only when asked for (`verdict`, `verdicts`), for every frame
    not yet judged, in the order heard and exactly as if each had been judged when it
    arrived. A call asks only while a verdict can change a decision (a turn is being
    judged, or one just started and the frames before it count), so the searches are
    not paid for the rest of the time the agent talks over line noise or the caller.
    The last `history_frames` frames can be judged after the fact.
    """

    def __init__(self, rate: int, window_ms: int = 600, *, history_frames: int = 16) -> None:
        if rate % ANALYSIS_RATE:
            raise ValueError(f"{rate} Hz is not a multiple of {ANALYSIS_RATE} Hz")
        self.rate = rate
        self.window_ms = window_ms
        self._factor = rate // ANALYSIS_RATE
        self._analysis = ANALYSIS_RATE * ANALYSIS_MS // 1000
        self._max_delay = ANALYSIS_RATE * window_ms // 1000
        frame = ANALYSIS_RATE * FRAME_MS // 1000
        # The spare history covers the frames judged after the fact, with room for the
        # played side running ahead of the heard side when packets arrive in bursts.
        self._heard = _Ring(self._analysis, 2 * history_frames * frame)
        self._ref = _Ring(self._analysis + self._max_delay, 4 * history_frames * frame)
        # Only lags 0..ref - analysis are read, where a circular correlation of the
        # reference's own length never wraps: no zero padding beyond it is needed.
        self._nfft = _fast_size(self._ref.window)
        self._cum = np.zeros(self._ref.window + 1, dtype=np.float64)
        self._emphasis = [0.0, 0.0]  # the last sample of each stream, for pre-emphasis
        #: The absolute end of the last played frame that was not silence.
        self._loud_end = -self._ref.buf.size
        #: Recent frame powers, newest last, for the line's noise floor (`_noise_at`);
        #: the first entry stands for the line before anything was heard.
        start = _FULL_SCALE_SQ * 10 ** (NOISE_START_DBFS / 10)
        self._powers: deque[float] = deque([start], maxlen=NOISE_FRAMES + history_frames)
        #: Frames heard and not yet judged, and the verdicts of the latest judged ones.
        self._unjudged: deque[_Heard] = deque(maxlen=history_frames)
        self._verdicts: deque[tuple[int, bool]] = deque(maxlen=history_frames)
        self._frames = 0
        self._judged = 0
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
        ref = self._ref
        if ref.total - self._loud_end >= ref.buf.size and not pcm.any():
            return  # silence into silence: nothing to remember
        new = self._decimate(pcm, 0)
        ref.push(new)
        if new.any():
            self._loud_end = ref.total

    @property
    def reference_active(self) -> bool:
        """The agent was audible within the window: its echo may still be arriving."""
        return self._audible(self._ref.total)

    def _audible(self, ref_end: int) -> bool:
        ref = self._ref
        if ref_end - self._loud_end >= ref.window:
            return False  # nothing but silence played in the window
        return _dbfs(ref.energy(ref_end), ref.window) > REFERENCE_FLOOR_DBFS

    def listen(self, pcm: NDArray[np.int16]) -> bool:
        """Record one inbound frame for judging; False if it was too short to judge."""
        new = self._decimate(pcm, 1)
        if new.size == 0:
            return False
        self._heard.push(new)
        power = float(np.dot(new, new)) / new.size
        self._powers.append(power)
        self._unjudged.append(
            _Heard(
                self._frames,
                self._heard.total,
                self._ref.total,
                new.size,
                power,
            )
        )
        self._frames += 1
        return True

    def verdict(self) -> bool:
        """Whether the newest frame heard is the agent's echo."""
        (newest,) = self.verdicts(1)
        return newest

    def verdicts(self, count: int) -> list[bool]:
        """Echo verdicts of the newest `count` frames heard, oldest first; frames too
        old to judge any more (or never heard) count as not echo."""
        if self._unjudged and self._unjudged[0].number > self._judged:
            # Frames went by unjudged: the path found before them is no evidence now.
            self._path = None
            self._since_search = SEARCH_EVERY_NONE
        while self._unjudged:
            frame = self._unjudged.popleft()
            self._verdicts.append((frame.number, self._judge(frame)))
        self._judged = self._frames
        first = self._frames - count
        known = {number: echo for number, echo in self._verdicts if number >= first}
        return [known.get(number, False) for number in range(first, self._frames)]

    def heard(self, pcm: NDArray[np.int16]) -> bool:
        """One inbound frame judged at once; True when it is the agent's echo."""
        return self.listen(pcm) and self.verdict()

    # ------------------------------------------------------------------ internals

    def _judge(self, frame: _Heard) -> bool:
        self._since_search += 1
        ref_start = frame.ref_end - self._ref.window
        if not (self._ref.holds(ref_start) and self._heard.holds(frame.heard_end - self._analysis)):
            self._path = None  # heard too long ago: its audio is gone
            return False
        if not self._audible(frame.ref_end):
            self._path = None
            return False
        floor = self._noise_at(frame.number)
        if frame.power < floor * 10 ** (JUDGE_ABOVE_NOISE_DB / 10):
            return False  # line noise: neither echo nor speech
        every = SEARCH_EVERY_NONE if self._path is None else SEARCH_EVERY_HELD
        if self._since_search >= every:
            self._path = self._search(frame)
        if self._path is None:
            return False
        delay, gain = self._path
        new = self._heard.span(frame.heard_end - frame.size, frame.heard_end)
        echo = self._ref.span(frame.ref_end - delay - frame.size, frame.ref_end - delay)
        residual = new - gain * echo
        noise = floor * frame.size
        above = frame.power * frame.size - noise
        unexplained = float(np.dot(residual, residual)) - noise
        return unexplained <= UNEXPLAINED_MAX * max(above, 0.0)

    def _search(self, frame: _Heard) -> tuple[int, float] | None:
        """The echo path: the delay where the caller audio up to `frame` best matches
        what had been played by then, and its gain; None when nothing played explains
        it."""
        self._since_search = 0
        self.searches += 1
        x = self._heard.span(frame.heard_end - self._analysis, frame.heard_end)
        ref = self._ref.span(frame.ref_end - self._ref.window, frame.ref_end)
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
        matrix = _decimator(n, self._factor)
        y: NDArray[np.float64] = np.dot(matrix, pcm[:n])
        out = y[:-1]
        out[0] -= PRE_EMPHASIS * self._emphasis[stream]
        self._emphasis[stream] = float(y[-1])
        return out

    def _noise_at(self, number: int) -> float:
        """The line's noise floor when frame `number` was heard: the quietest of the
        `NOISE_FRAMES` frames up to it, so the pauses between words set it and speech
        or echo never become "noise". Worked out only for frames judged."""
        powers = self._powers
        end = len(powers) - (self._frames - number) + 1
        window = itertools.islice(powers, max(0, end - NOISE_FRAMES), end)
        return min(window) * NOISE_MIN_BIAS


@functools.lru_cache(maxsize=16)
def _decimator(n: int, factor: int) -> NDArray[np.float64]:
    """One matrix per frame shape for every guard in the process: a 20 ms frame's is
    100 kB, and one per call would crowd the CPU cache out under load.

    The matrix that takes `n` samples to their `factor`-block means, pre-emphasised
    within the frame (the first output's predecessor, from the previous frame, is the
    caller's to subtract), plus one last row: the frame's last block mean, unemphasised."""
    m = n // factor
    matrix = np.zeros((m + 1, n), dtype=np.float64)
    columns = np.arange(n)
    block = columns // factor
    matrix[block, columns] = 1.0 / factor
    matrix[block[:-factor] + 1, columns[:-factor]] = -PRE_EMPHASIS / factor
    matrix[m, columns[-factor:]] = 1.0 / factor
    matrix.flags.writeable = False
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
