"""What the sans-I/O session hands to its transport: frames, pacing and a close.

The response stream is a queue of `Step`s, each with a delay relative to the previous
stream emission (that is how deltas are paced at `realtime_factor`). Side effects of a
step (counting audio actually sent for truncate checks, finishing a response) run in
`on_emit` at the moment it leaves, never when it was planned, so a cancel or a
truncate always sees exactly what the client could have received.
"""

from __future__ import annotations

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
