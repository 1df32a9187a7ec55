"""Turn latency: from the caller's end of speech to the first agent frame sent back.

Why a class of its own: three moments from three places (the server's
`speech_stopped`, the first audio delta of the answer, the tick that sends its first
frame) make one measurement, and a new `speech_started` cancels a half-made one.
Sans-I/O: times come in as arguments, a finished `TurnLatency` comes out.
"""

from __future__ import annotations

from telephony_agent.call.record import TurnLatency

__all__ = ["TurnTimer"]


class TurnTimer:
    def __init__(self) -> None:
        self._stopped_at: float | None = None
        self._stopped_ms = 0
        self._first_delta_at: float | None = None
        self._item: str | None = None

    def speech_started(self) -> None:
        """The caller speaks again: whatever was being timed is not an answer to it."""
        self._stopped_at = None
        self._first_delta_at = None
        self._item = None

    def speech_stopped(self, now: float, now_ms: int) -> None:
        if self._stopped_at is None:
            self._stopped_at = now
            self._stopped_ms = now_ms

    def delta(self, item_id: str, now: float) -> None:
        """An audio delta arrived; the first one after the caller stopped starts the answer."""
        if self._stopped_at is not None and self._first_delta_at is None:
            self._first_delta_at = now
            self._item = item_id

    def answers(self, item_id: str) -> bool:
        """Whether a frame of `item_id` going out ends the measurement (cheap, per tick)."""
        return self._first_delta_at is not None and item_id == self._item

    def frame(self, now: float) -> TurnLatency | None:
        """The answer's first frame went out (`answers` said so): the turn's latency."""
        if self._first_delta_at is None:
            return None
        latency = None
        if self._stopped_at is not None:
            latency = TurnLatency(
                to_first_delta_ms=(self._first_delta_at - self._stopped_at) * 1000,
                to_first_frame_ms=(now - self._stopped_at) * 1000,
                at_ms=self._stopped_ms,
            )
        self.speech_started()
        return latency
