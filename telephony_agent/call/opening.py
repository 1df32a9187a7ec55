"""The first seconds of a call we placed: who answered, and when the agent may speak.

Why its own piece: on an outbound call the agent must not talk into the void or over a
voicemail greeting. It waits for the callee's first words (the model then greets, as
its instructions for outbound calls say) or, if the callee stays silent, greets after
`greet_after_s`. With answering-machine detection on, nothing the model says is
played until the detector has decided: a person gets the greeting, a machine gets the
profile's action — hang up, leave a message once the greeting (or its beep) is over,
or carry on as with a person.

Sans-I/O: the Call feeds it the callee's frames, speech events and the media clock,
and carries out the actions it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import structlog
from numpy.typing import NDArray

from telephony_agent.agent.outbound import OpeningSettings
from telephony_agent.audio.amd import AmdVerdict, AnsweringMachineDetector

__all__ = ["OpeningAction", "OpeningActions", "OpeningDriver", "OpeningSettings", "OutboundOpening"]

log = structlog.get_logger(__name__)

OpeningAction = Literal["greet", "hangup", "leave_message", "proceed"]


class OutboundOpening:
    """Decides the opening of one outbound call; `verdict` ends up in the record."""

    def __init__(self, settings: OpeningSettings, leg_rate: int) -> None:
        self.settings = settings
        self._detector = AnsweringMachineDetector(leg_rate) if settings.amd == "detect" else None
        self.verdict: AmdVerdict | None = None
        self._callee_spoke = False
        self._done = False
        self._waiting_for_message_slot = False

    @property
    def holds_responses(self) -> bool:
        """While True the model's own responses are cancelled, not played: the detector
        has not decided, or a machine is still talking before our message."""
        if self._detector is None or self._done:
            return False
        return self.verdict is None or self._waiting_for_message_slot

    @property
    def done(self) -> bool:
        return self._done

    def audio(self, pcm: NDArray[np.int16]) -> None:
        """One frame of the callee's audio (ignored once the opening is over)."""
        detector = self._detector
        if detector is None or self._done:
            return
        size = detector.rate // 50
        for start in range(0, pcm.size - size + 1, size):
            verdict = detector.feed(pcm[start : start + size])
            if verdict is not None:
                self.verdict = verdict

    def callee_spoke(self) -> None:
        self._callee_spoke = True

    def tick(self, now_ms: int) -> OpeningAction | None:
        """What to do now, once; None while waiting."""
        if self._done:
            return None
        if self._detector is None:
            if self._callee_spoke:
                self._done = True
                return "proceed"  # the model answers their "Hello?" with the greeting
            if now_ms >= self.settings.greet_after_s * 1000:
                self._done = True
                return "greet"
            return None
        verdict = self.verdict
        if verdict is None:
            return None
        if verdict.kind != "machine" or self.settings.on_machine == "continue":
            self._done = True
            return "greet"
        if self.settings.on_machine == "hangup":
            self._done = True
            return "hangup"
        self._waiting_for_message_slot = True
        if self._detector.ready_for_message:
            self._done = True
            self._waiting_for_message_slot = False
            return "leave_message"
        return None


@dataclass(frozen=True)
class OpeningActions:
    """What the opening may make its Call do."""

    greet: Callable[[], None]
    #: The callee spoke first: the model greets in its answer, no separate greeting.
    greeting_done: Callable[[], None]
    say_then_hang_up: Callable[[str, str], None]
    end_now: Callable[[str], None]
    note: Callable[[str], None]


class OpeningDriver:
    """Carries out what `OutboundOpening` decides, through the Call's `OpeningHost`."""

    def __init__(self, opening: OutboundOpening, host: OpeningActions) -> None:
        self.opening = opening
        self._host = host
        self._noted = False

    def tick(self, now_ms: int) -> None:
        action = self.opening.tick(now_ms)
        verdict = self.opening.verdict
        if verdict is not None and not self._noted:
            self._noted = True
            seconds = verdict.decided_ms / 1000
            self._host.note(
                f"[answering-machine detection: {verdict.kind} after {seconds:.1f} s, "
                f"{verdict.reason}]"
            )
            log.info("amd_verdict", kind=verdict.kind, reason=verdict.reason, ms=verdict.decided_ms)
        if action == "greet":
            self._host.greet()
        elif action == "proceed":
            self._host.greeting_done()
        elif action == "hangup":
            self._host.end_now("answering_machine")
        elif action == "leave_message":
            message = self.opening.settings.machine_message
            self._host.say_then_hang_up(
                f"You reached voicemail. Say exactly this message, then stop: {message}",
                "voicemail_left",
            )
