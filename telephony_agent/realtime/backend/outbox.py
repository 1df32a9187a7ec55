"""What the sans-I/O session hands to its transport: frames, pacing and a close.

The response stream is a queue of `Step`s, each with a delay relative to the previous
stream emission (that is how deltas are paced at `realtime_factor`). Side effects of a
step (counting audio actually sent for truncate checks, finishing a response) run in
`on_emit` at the moment it leaves, never when it was planned, so a cancel or a
truncate always sees exactly what the client could have received.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CloseConnection:
    code: int
    reason: str


Frame = str | bytes | CloseConnection
"""A text frame, a binary frame, or the instruction to close the websocket."""


@dataclass
class Step:
    event: dict[str, Any] | None
    """GA-named server event; renamed for the dialect and stamped when emitted."""
    delay_s: float = 0.0
    audio: bytes | None = None
    """PCM bytes base64-encoded into `event["delta"]` at emission (saves memory)."""
    on_emit: Callable[[dict[str, Any]], None] | None = None
    close: CloseConnection | None = None
    owner: str | None = None
    """Response id the step belongs to, so a cancel can drop exactly its steps."""


#: A paced stream that fell this far behind (blocked loop) restarts its schedule
#: instead of bursting to catch up.
RESYNC_S = 0.5


class Lanes:
    """The two lanes that leave a session: control frames at once, response steps paced.

    Control frames may overtake a streaming response, which is exactly what a real
    server does when the caller talks over it. A step's delay counts from the previous
    step's emission; `poll` hands out what is due and says whether a close went out.
    """

    def __init__(self) -> None:
        self.immediate: deque[Frame] = deque()
        self.stream: deque[Step] = deque()
        self._anchor: float | None = None

    def poll(self, now: float, render: Callable[[Step], str | None]) -> tuple[list[Frame], bool]:
        """Frames due at `now` in order, and True when the last of them is a close."""
        frames: list[Frame] = []
        while True:
            while self.immediate:
                frame = self.immediate.popleft()
                frames.append(frame)
                if isinstance(frame, CloseConnection):
                    return frames, True
            if not self.stream:
                self._anchor = None
                return frames, False
            if self._anchor is None:
                self._anchor = now
            step = self.stream[0]
            due = self._anchor + step.delay_s
            if due > now:
                return frames, False
            self.stream.popleft()
            self._anchor = due if now - due < RESYNC_S else now
            if step.close is not None:
                frames.append(step.close)
                return frames, True
            rendered = render(step)
            if rendered is not None:
                frames.append(rendered)

    def next_due(self) -> float | None:
        """When the next paced step is due (None: nothing is streaming)."""
        if self.stream and self._anchor is not None:
            return self._anchor + self.stream[0].delay_s
        return None

    def drop(self, owner: str) -> None:
        """Forget the steps of one response (it was cancelled)."""
        self.stream = deque(step for step in self.stream if step.owner != owner)

    def clear(self) -> None:
        self.stream.clear()
        self.immediate.clear()
