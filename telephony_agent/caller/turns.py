"""Turn latency as the caller hears it, from the two audio streams alone.

Why from audio: the softphone must measure any deployment, including ones whose
logs it cannot read. A turn is the caller falling silent after speech; its
latency is the time from that moment to the first audible frame of the agent's
answer. Decisions are per 20 ms frame on RMS level, so the cost is one numpy
reduction per frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["TurnMeter"]

#: Frames quieter than this (dBFS) count as silence.
SILENCE_DBFS = -45.0


def frame_dbfs(pcm: NDArray[np.int16]) -> float:
    if pcm.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64))))
    return 20.0 * float(np.log10(max(rms, 1e-3) / 32768.0))


@dataclass
class TurnMeter:
    """Feed it one sent and one received frame per tick; read `latencies_ms`."""

    frame_ms: int = 20
    #: Caller silence needed before a turn counts as ended (the caller stopped talking).
    end_of_speech_ms: int = 200
    latencies_ms: list[float] = field(default_factory=list)
    _speaking: bool = False
    _silent_frames: int = 0
    _waiting_since_ms: float | None = None
    _now_ms: float = 0.0

    def feed(self, sent: NDArray[np.int16], received: NDArray[np.int16] | None) -> None:
        caller_loud = frame_dbfs(sent) > SILENCE_DBFS
        agent_loud = received is not None and frame_dbfs(received) > SILENCE_DBFS
        if caller_loud:
            self._speaking = True
            self._silent_frames = 0
            self._waiting_since_ms = None
        elif self._speaking:
            self._silent_frames += 1
            if self._silent_frames * self.frame_ms >= self.end_of_speech_ms:
                self._speaking = False
                # The turn ended when the silence began, not when we noticed it.
                self._waiting_since_ms = self._now_ms - (self._silent_frames - 1) * self.frame_ms
        if agent_loud and self._waiting_since_ms is not None:
            self.latencies_ms.append(self._now_ms - self._waiting_since_ms)
            self._waiting_since_ms = None
        self._now_ms += self.frame_ms
