"""What a behaviour is given for one response, and what it hands back.

These types sit in their own module so that every behaviour (the simple ones in
`behaviours.py`, the booking line in `booking_behaviour.py`) can use them without
importing the module that picks a behaviour by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class FunctionCallSpec:
    name: str
    arguments: str
    """JSON text, sent verbatim (split into deltas) as the call's arguments."""


@dataclass(frozen=True)
class ToolOutput:
    """A `function_call_output` item the client added since the previous response."""

    call_id: str
    name: str | None
    """Name of the function call it answers (None if that call is no longer known)."""
    output: str


@dataclass(frozen=True)
class TurnInput:
    """Everything that arrived since the previous response, for the next one to answer.

    Each field holds the newest of its kind and is consumed by the response it feeds,
    so a behaviour can tell "the caller just typed digits" from "digits typed earlier".
    """

    user_audio: NDArray[np.int16] | None
    """The committed caller audio this response answers, if any (at `input_rate`)."""
    input_rate: int
    output_rate: int
    caller_phrase: str | None = None
    """Text of the shipped caller phrase `user_audio` was recognised as, if any."""
    user_text: str | None = None
    """The newest user text message (DTMF arrives this way, e.g. "The caller typed: 4 5")."""
    tool_output: ToolOutput | None = None
    instructions: str | None = None
    """The `response.create` instructions (a greeting is requested this way)."""

    @property
    def has_speech(self) -> bool:
        return self.user_audio is not None and len(self.user_audio) > 0


@dataclass(frozen=True)
class ResponseContent:
    audio: NDArray[np.int16]
    """PCM16 at the output rate; empty for a response without speech."""
    text: str
    function_calls: tuple[FunctionCallSpec, ...] = ()


class Behaviour(Protocol):
    def respond(self, turn: TurnInput) -> ResponseContent: ...
