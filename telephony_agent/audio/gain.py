"""A gain on outgoing frames that moves smoothly: ducking the agent without a click.

Why a ramp: switching a frame's gain from one sample to the next is a step in the
waveform, heard as a click. Moving it linearly over a few milliseconds is inaudible
as such and still fast enough to be heard as "the agent lowered its voice at once".
Cost: nothing at unity gain (the frame is returned as it is), one multiply per frame
otherwise; the ramp is a precomputed slice.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["RAMP_MS", "GainRamp"]

#: How long a change of gain takes.
RAMP_MS = 5


class GainRamp:
    def __init__(self, rate: int) -> None:
        self._ramp_samples = max(1, rate * RAMP_MS // 1000)
        self.gain = 1.0
        self.target = 1.0
        #: Samples of the current ramp still to go.
        self._left = 0
        self._start = 1.0

    def set_db(self, db: float) -> None:
        """Move to `db` (0 is unity) over RAMP_MS, from wherever the gain is now."""
        target = float(10 ** (db / 20))
        if target == self.target:
            return
        self._start = self.gain
        self.target = target
        self._left = self._ramp_samples

    def reset(self) -> None:
        """Back to unity at once (nothing is playing, so nothing can click)."""
        self.gain = self.target = self._start = 1.0
        self._left = 0

    def apply(self, pcm: NDArray[np.int16]) -> NDArray[np.int16]:
        """The frame with the gain applied: a new array unless the gain is unity."""
        if self._left == 0 and self.gain == 1.0:
            return pcm
        n = pcm.size
        gains = np.full(n, self.target, dtype=np.float64)
        if self._left:
            done = self._ramp_samples - self._left
            count = min(self._left, n)
            step = (self.target - self._start) / self._ramp_samples
            gains[:count] = self._start + step * (done + 1 + np.arange(count))
            self._left -= count
        self.gain = float(gains[-1]) if n else self.gain
        if self._left == 0:
            self.gain = self.target
        out = np.clip(np.rint(pcm * gains), -32768, 32767).astype(np.int16)
        return out
