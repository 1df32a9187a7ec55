"""The bridge's one hook for turn-taking: local listening plus the barge-in decider.

Why a shell of its own: the decider (`barge_in.py`) is pure logic; what feeds it is
DSP on the caller's frames (a speech detector, the echo guard) and the agent's frames
(the echo reference). Bundling them keeps the bridge to one call per event, keeps the
per-tick work to a ring write, and runs the costly part, the echo search, only while a
verdict can change a decision: for the frames of a turn being judged, and, after the
fact, for the frames just before a turn that starts while the agent's echo may be on
the line (they count towards it). The rest of the time inbound frames are only
recorded. Inbound audio is judged in 20 ms frames whatever
size the leg delivers.
"""

from __future__ import annotations

import numpy as np
import structlog
from numpy.typing import NDArray

from telephony_agent.audio.echo import ANALYSIS_RATE, FRAME_MS, EchoGuard
from telephony_agent.audio.voicing import Voicing, make_voicing
from telephony_agent.call.barge_in import (
    NOTHING,
    SEED_FRAMES,
    BargeInDecider,
    Decision,
    TurnPolicy,
)

__all__ = ["TurnGuard"]

log = structlog.get_logger(__name__)


class TurnGuard:
    def __init__(
        self, policy: TurnPolicy, rate: int, *, guarded: bool, transcription: bool
    ) -> None:
        self.decider = BargeInDecider(policy, guarded=guarded, transcription=transcription)
        self.rate = rate
        self._frame = rate * FRAME_MS // 1000
        self._carry = np.zeros(0, dtype=np.int16)
        self._voicing: Voicing | None = None
        self.echo: EchoGuard | None = None
        if not self.decider.guarded:
            return
        self._voicing = make_voicing(policy.local_vad, rate)
        if policy.echo_guard:
            if rate % ANALYSIS_RATE:
                log.warning("echo_guard_unavailable", leg_rate=rate)
            else:
                self.echo = EchoGuard(rate, policy.echo_window_ms, history_frames=SEED_FRAMES)

    @property
    def echo_possible(self) -> bool:
        return self.echo is not None and self.echo.reference_active

    def played(self, pcm: NDArray[np.int16]) -> None:
        """The frame the tick sent to the leg (after ducking): the echo reference."""
        if self.echo is not None:
            self.echo.played(pcm)

    def heard(self, pcm: NDArray[np.int16], *, agent_busy: bool) -> Decision:
        """Caller audio as the leg delivered it; judged in 20 ms frames."""
        voicing = self._voicing
        if voicing is None:
            return NOTHING
        data = np.concatenate((self._carry, pcm)) if self._carry.size else pcm
        n = self._frame
        whole = data.size - data.size % n
        self._carry = data[whole:].copy()
        decision = NOTHING
        for start in range(0, whole, n):
            frame = data[start : start + n]
            speech = voicing.is_speech(frame)
            echo: bool | None = False
            if self.echo is not None:
                self.echo.listen(frame)
                echo = self.echo.verdict() if self.decider.counting else None
            step = self.decider.frame(FRAME_MS, speech=speech, echo=echo, agent_busy=agent_busy)
            if step.actions or step.ignored:
                decision = _merge(decision, step)
        return decision

    def speech_started(self, item_id: str | None, *, agent_busy: bool) -> Decision:
        echo_possible = self.echo_possible
        if self.echo is not None and self.decider.holds(
            agent_busy=agent_busy, echo_possible=echo_possible
        ):
            # The frames before the turn count towards it: judge them now.
            self.decider.settle_echo(self.echo.verdicts(SEED_FRAMES))
        return self.decider.speech_started(
            item_id, agent_busy=agent_busy, echo_possible=echo_possible
        )

    def speech_stopped(self, item_id: str | None, now_ms: int, *, agent_busy: bool) -> Decision:
        return self.decider.speech_stopped(item_id, now_ms, agent_busy=agent_busy)

    def transcript(self, item_id: str | None, text: str) -> Decision:
        return self.decider.transcript(item_id, text)

    def tick(self, now_ms: int) -> Decision:
        return self.decider.tick(now_ms)


def _merge(first: Decision, second: Decision) -> Decision:
    if not (first.actions or first.ignored):
        return second
    return Decision((*first.actions, *second.actions), second.ignored or first.ignored)
