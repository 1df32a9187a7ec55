"""When the caller's speech interrupts the agent: the barge-in decision, without I/O.

Why a decider of its own: the server's VAD reports `speech_started`, but whether that
is an interruption is the bridge's call, and the rule is a small state machine that
must be testable without sockets or clocks. The bridge feeds it what happens and does
what it answers: "cut" stops the agent (the exact cut of `interruption.py`).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Action", "BargeInDecider"]

Action = Literal["cut"]


class BargeInDecider:
    """Speech over the agent's audio, or over a response being generated, cuts it at once."""

    def speech_started(self, *, agent_heard: bool, response_active: bool) -> Action | None:
        if agent_heard or response_active:
            return "cut"
        return None
