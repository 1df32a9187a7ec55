"""What a Call is given besides its leg and session: behaviour, an observer, a recorder.

Why apart from the bridge: the switchboard builds these per call from the profile and
the records keeper, and the bridge only consumes them; keeping the plain values and
the two small protocols here keeps `bridge.py` about the real-time work.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from telephony_agent.agent import DEFAULT_DTMF_MESSAGE
from telephony_agent.agent.outbound import OpeningSettings
from telephony_agent.call.barge_in import TurnPolicy
from telephony_agent.call.hold import ToolFeedback
from telephony_agent.call.idle import DEFAULT_GOODBYE, DEFAULT_REPROMPT
from telephony_agent.call.record import BargeIn, TurnLatency
from telephony_agent.call.tools import ToolResult

__all__ = [
    "GREETING_AUDIO_ITEM",
    "GREETING_AUDIO_RATE",
    "CallObserver",
    "CallProfile",
    "FrameRecorder",
    "RecordingFeed",
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


#: Caller frames waiting for a tick beyond this are dropped from the recording only.
_CALLER_BACKLOG = 3


class RecordingFeed:
    """Pairs each tick's agent frame with the caller frame that arrived meanwhile.

    The caller's clock is not the media clock: frames arrive in bursts and may run
    fast. Each tick takes the oldest waiting caller frame and drops any backlog past
    a few frames, so the two channels of a recording stay aligned.
    """

    def __init__(self, recorder: FrameRecorder) -> None:
        self._recorder = recorder
        self._frames: deque[NDArray[np.int16]] = deque()

    def caller(self, pcm: NDArray[np.int16]) -> None:
        self._frames.append(pcm)

    def tick(self, agent: NDArray[np.int16] | None) -> None:
        frames = self._frames
        caller = frames.popleft() if frames else None
        while len(frames) > _CALLER_BACKLOG:
            frames.popleft()
        self._recorder.add(caller, agent)


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
    #: What the caller hears while a tool runs, and the longest a tool turn may take.
    tool_feedback: ToolFeedback = field(default_factory=ToolFeedback)
    #: Set for calls we placed: wait for the callee, answering-machine detection.
    opening: OpeningSettings | None = None
    #: Barge-in: when the caller's speech over the agent interrupts it (`[turns]`).
    turns: TurnPolicy = field(default_factory=TurnPolicy)
