"""What a Call is given besides its leg and session: behaviour, an observer, a recorder.

Why apart from the bridge: the switchboard builds these per call from the profile and
the records keeper, and the bridge only consumes them; keeping the plain values and
the two small protocols here keeps `bridge.py` about the real-time work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from telephony_agent.agent import DEFAULT_DTMF_MESSAGE
from telephony_agent.call.idle import DEFAULT_GOODBYE, DEFAULT_REPROMPT
from telephony_agent.call.record import BargeIn, TurnLatency
from telephony_agent.call.tools import ToolResult

__all__ = [
    "GREETING_AUDIO_ITEM",
    "GREETING_AUDIO_RATE",
    "CallObserver",
    "CallProfile",
    "FrameRecorder",
]


class CallObserver(Protocol):
    """Hears what a call leaves behind as it happens (the records writer); must not block."""

    def tool_result(self, result: ToolResult) -> None: ...

    def turn(self, latency: TurnLatency) -> None: ...

    def barge_in(self, barge_in: BargeIn) -> None: ...

    def dtmf(self, digits: str) -> None: ...


class FrameRecorder(Protocol):
    """Takes one caller frame (or None) and one agent frame (or None) per media tick."""

    def add(self, caller: NDArray[np.int16] | None, agent: NDArray[np.int16] | None) -> None: ...


#: The item id under which a greeting recording is played (never sent to the model).
GREETING_AUDIO_ITEM = "local-greeting-audio"
#: Greeting recordings are decoded at this rate once per deployment, then brought to
#: each call's leg (whatever the model's output rate or format) when the call starts.
GREETING_AUDIO_RATE = 24000


@dataclass(frozen=True)
class CallProfile:
    """Per-call behaviour that is not the model's own configuration."""

    greeting: str | None = None
    #: A recording played before the model speaks: PCM16 bytes at `GREETING_AUDIO_RATE`.
    greeting_audio: bytes | None = None
    max_duration_s: float | None = None
    fallback_instructions: str = (
        "Say in one short sentence that you had a brief technical problem and ask the caller "
        "to repeat what they said."
    )
    max_consecutive_failures: int = 3
    #: Keypad entry: digits are collected until the terminator, `dtmf_max_digits`, or
    #: this many seconds without a digit, then given to the model as one user message.
    dtmf_inter_digit_s: float = 3.0
    dtmf_max_digits: int = 20
    dtmf_terminator: str = "#"
    #: `{digits}` becomes the digits separated by spaces ("4 5 1 2 #").
    dtmf_message: str = DEFAULT_DTMF_MESSAGE
    hangup_drain_timeout_s: float = 15.0
    #: Agent speech starts playing once this much is queued (or the item is complete),
    #: so a talk spurt cannot underrun at its start; part of every turn's latency.
    playout_preroll_ms: int = 80
    #: Seconds of silence (nobody speaking) before the agent reprompts; None: never.
    idle_reprompt_s: float | None = None
    idle_max_reprompts: int = 2
    idle_reprompt_instructions: str = DEFAULT_REPROMPT
    idle_goodbye_instructions: str = DEFAULT_GOODBYE
