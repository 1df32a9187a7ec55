"""Writing a call's transcript: into its record, the log, and the front door's live view.

Why one writer: lines come from many places (the agent as heard, the caller's turns,
tools, keypad, system notes), and each must land in the same three places with the
same call-clock times.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from telephony_agent.call.lines import Line
from telephony_agent.call.record import TranscriptLine

__all__ = ["TranscriptWriter"]

log = structlog.get_logger(__name__)


class TranscriptWriter:
    def __init__(
        self,
        lines: list[TranscriptLine],
        clock_ms: Callable[[], int],
        on_line: Callable[[TranscriptLine], None] | None,
    ) -> None:
        self._lines = lines
        self._clock_ms = clock_ms
        self._on_line = on_line

    def say(self, speaker: str, text: str) -> None:
        """A line that happens now (a tool call, a key, a system note)."""
        now_ms = self._clock_ms()
        self._write(TranscriptLine(round(now_ms / 1000, 2), speaker, text, now_ms, now_ms))

    def emit(self, lines: list[Line]) -> None:
        """Lines placed on the call clock by whoever made them (agent or caller turns)."""
        if not lines:
            return
        t = round(self._clock_ms() / 1000, 2)
        for line in lines:
            self._write(
                TranscriptLine(
                    t, line.speaker, line.text, line.start_ms, line.end_ms, line.truncated
                )
            )

    def _write(self, line: TranscriptLine) -> None:
        self._lines.append(line)
        log.info("transcript", speaker=line.speaker, text=line.text, truncated=line.truncated)
        if self._on_line is not None:
            self._on_line(line)
