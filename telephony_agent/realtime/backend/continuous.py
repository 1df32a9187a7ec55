"""A backend session that talks without pause, for load benchmarks.

Why a session of its own: the ordinary session waits for the caller (VAD, commit,
response), so under load it measures turn-taking, not the steady two-way stream a busy
phone line carries. This one starts a response as soon as the client has configured the
session and starts the next the moment one ends, never sends VAD events (so nothing on
the client side ducks or cuts the agent), and keeps caller audio only as arithmetic:
when each append arrived and how many seconds it carried (`TalkLog`). The clock is
injected, so the session stays free of I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from telephony_agent.realtime.backend.options import BackendOptions
from telephony_agent.realtime.backend.response import ResponseRun, ResponseStatus
from telephony_agent.realtime.backend.session import BackendSession
from telephony_agent.realtime.backend.stats import BackendStats, TalkLog

__all__ = ["ContinuousSession"]


class ContinuousSession(BackendSession):
    """`BackendSession` with behaviour "continuous"; see the module docstring."""

    def __init__(
        self,
        options: BackendOptions,
        stats: BackendStats,
        *,
        clock: Callable[[], float],
        **kwargs: Any,
    ) -> None:
        super().__init__(options, stats, **kwargs)
        self._clock = clock
        self._arrival = 0.0
        self._talking = False
        self.talk = TalkLog()
        stats.talks.append(self.talk)

    def receive_text(self, text: str) -> None:
        self._arrival = self._clock()
        configured = self.config
        super().receive_text(text)
        if self.config is not configured:
            # A session.update was applied: the client has said who it is and what it
            # takes, so from now on the model talks.
            self.talk.tag = self.config.instructions
            if not self._talking and not self.closed:
                self._talking = True
                self._start_response(True)

    def feed_audio(self, pcm: NDArray[np.int16]) -> None:
        seconds = len(pcm) / self.config.input_rate
        self.stats.audio_appends += 1
        self.stats.audio_ms_received += seconds * 1000
        self.talk.arrivals.append(self._arrival)
        self.talk.seconds.append(seconds)

    def finished(self, run: ResponseRun, status: ResponseStatus, reason: str | None) -> None:
        super().finished(run, status, reason)
        if self._talking and not self.closed and self._active is None:
            self._start_response(True)
