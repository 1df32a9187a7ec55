"""When the caller's speech interrupts the agent: the barge-in decision, without I/O.

Why a decider of its own: the server's VAD reports `speech_started`, but a speakerphone
echoing the agent, a cough, line noise or a caller's "mm-hm" all start a turn too. If
each of them cut the agent off, nobody could hold a conversation on a real phone. So
with the guard on, the server is asked not to interrupt (`interrupt_response: false`)
nor to answer by itself (`create_response: false`), and this state machine decides
(the rule is explained in docs/turn-taking.md):

* speech that starts while the agent is speaking (or about to, or its echo may still
  be coming back) is *pending*: the agent's audio is ducked, not cut;
* it becomes an interruption ("cut": the exact cut of `interruption.py`) once the
  caller's own speech, frames judged echo not counting, has lasted `min_speech_ms`,
  or once its transcript has words that are not backchannels;
* if the turn ends first, the volume comes back and nothing is cancelled or
  truncated; the turn is counted as ignored (echo, backchannel or short);
* every real turn is answered exactly once ("answer": one `response.create`) when it
  ends; an ignored one is not answered (it stays in the conversation all the same).

Speech while the agent is quiet and cannot be echoing is a turn at once, as without
the guard. Inputs come from the bridge: server VAD events, final input transcripts,
one verdict per inbound 20 ms frame (speech? echo?) and the media tick.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal

from telephony_agent.audio.voicing import LocalVad
from telephony_agent.call.backchannel import (
    DEFAULT_BACKCHANNELS,
    is_backchannel,
    parse_backchannels,
)

__all__ = [
    "NOTHING",
    "SEED_FRAMES",
    "TRANSCRIPT_WAIT_MS",
    "Action",
    "BargeInDecider",
    "Decision",
    "IgnoredAs",
    "TurnPolicy",
]

#: duck: lower the agent's audio; restore: bring it back; cut: the turn is real (stop
#: the agent if it is speaking); answer: ask for the one response to this turn.
Action = Literal["duck", "restore", "cut", "answer"]
IgnoredAs = Literal["echo", "backchannel", "short"]

#: A pending turn that ended waits this long for its transcript before it is decided
#: without one.
TRANSCRIPT_WAIT_MS = 1500
#: Frames before `speech_started` that may count towards the turn (the server reports
#: speech after it has heard some).
SEED_FRAMES = 15


@dataclass(frozen=True)
class TurnPolicy:
    """The `[turns]` settings as one call uses them."""

    #: Caller speech (echo not counting) needed before the agent is cut; 0 cuts at once.
    min_speech_ms: int = 250
    #: The agent's level while a pending turn is decided.
    duck_db: float = -12.0
    echo_guard: bool = True
    #: How much of the agent's played audio is kept: the longest echo delay looked for.
    echo_window_ms: int = 600
    #: Normalised words (see `backchannel.py`) that never interrupt on their own.
    backchannels: frozenset[str] = field(
        default_factory=lambda: parse_backchannels(DEFAULT_BACKCHANNELS)
    )
    #: With input transcription, speech shorter than this may still be a backchannel:
    #: it is held (ducked) for its transcript instead of being cut at `min_speech_ms`.
    backchannel_max_ms: int = 600
    local_vad: LocalVad = "energy"

    @property
    def guarded(self) -> bool:
        """Whether speech over the agent is judged at all (else it cuts at once)."""
        return self.min_speech_ms > 0 or self.echo_guard


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...] = ()
    #: Set when a turn ends as not an interruption, with the reason.
    ignored: IgnoredAs | None = None


NOTHING = Decision()
_CUT = Decision(("cut",))
_CUT_ANSWER = Decision(("cut", "answer"))

TurnState = Literal["pending", "confirmed", "awaiting"]


@dataclass
class _Turn:
    item_id: str | None
    state: TurnState
    #: Caller speech so far; a frame judged echo takes 20 ms back off.
    voiced_ms: int = 0
    echo_ms: int = 0
    ducked: bool = False
    #: The transcript said backchannel words only.
    backchannel: bool = False
    #: When an ended, undecided turn stops waiting for its transcript.
    deadline_ms: int = 0


class BargeInDecider:
    """One call's turn-taking state; see the module docstring."""

    def __init__(self, policy: TurnPolicy, *, guarded: bool, transcription: bool) -> None:
        self.policy = policy
        self.guarded = guarded and policy.guarded
        #: Backchannels can only be recognised from a transcript.
        self.holds_for_words = transcription and bool(policy.backchannels)
        #: Turns that were not interruptions, by reason.
        self.ignored: Counter[str] = Counter()
        #: (ms, speech, echo) of the latest frames; echo is None where it was not judged
        #: (see `frame`) until `settle_echo` fills it in.
        self._history: deque[tuple[int, bool, bool | None]] = deque(maxlen=SEED_FRAMES)
        self._turn: _Turn | None = None

    @property
    def pending(self) -> bool:
        """A turn is being judged (the bridge keeps listening closely)."""
        return self._turn is not None and self._turn.state != "confirmed"

    @property
    def counting(self) -> bool:
        """A turn is counting frames: each frame's echo verdict matters now."""
        return self._turn is not None and self._turn.state == "pending"

    def holds(self, *, agent_busy: bool, echo_possible: bool) -> bool:
        """Whether `speech_started` with these facts would judge the turn (and so count
        the frames before it, echo verdicts included)."""
        return self.guarded and (agent_busy or echo_possible)

    def settle_echo(self, verdicts: list[bool]) -> None:
        """Echo verdicts for the newest frames (oldest first), worked out after the fact
        for frames that went by unjudged."""
        frames = list(self._history)
        start = len(frames) - len(verdicts)
        for i, echo in enumerate(verdicts):
            if start + i >= 0:
                ms, speech, known = frames[start + i]
                frames[start + i] = (ms, speech, echo if known is None else known)
        self._history = deque(frames, maxlen=SEED_FRAMES)

    # ------------------------------------------------------------------ inputs

    def speech_started(
        self, item_id: str | None, *, agent_busy: bool, echo_possible: bool
    ) -> Decision:
        """`agent_busy`: agent audio is queued or a response is being generated;
        `echo_possible`: the agent was audible within the echo window."""
        if not self.holds(agent_busy=agent_busy, echo_possible=echo_possible):
            self._turn = _Turn(item_id, "confirmed")
            return _CUT
        previous = self._turn
        turn = _Turn(item_id, "pending", ducked=previous is not None and previous.ducked)
        self._turn = turn
        for ms, speech, echo in reversed(self._history):
            if not (speech or echo):
                break
            if echo:
                turn.echo_ms += ms
            else:
                turn.voiced_ms += ms
        actions: list[Action] = []
        if agent_busy and not turn.ducked and (turn.voiced_ms or not turn.echo_ms):
            turn.ducked = True
            actions.append("duck")
        if self._persisted(turn):
            return self._confirm(turn, actions)
        return Decision(tuple(actions))

    def frame(self, ms: int, *, speech: bool, echo: bool | None, agent_busy: bool) -> Decision:
        """One inbound frame of `ms` milliseconds, as the local detectors judged it.

        `echo` may be None (not judged) while no turn is counting (`counting`): the
        verdict could not change anything then, and is settled later if a turn starts.
        """
        self._history.append((ms, speech, echo))
        turn = self._turn
        if turn is None or turn.state != "pending":
            return NOTHING
        if echo:
            turn.echo_ms += ms
            turn.voiced_ms = max(0, turn.voiced_ms - ms)
            return NOTHING
        if not speech:
            return NOTHING
        turn.voiced_ms += ms
        actions: list[Action] = []
        if agent_busy and not turn.ducked:
            turn.ducked = True
            actions.append("duck")
        if self._persisted(turn):
            return self._confirm(turn, actions)
        return Decision(tuple(actions)) if actions else NOTHING

    def speech_stopped(self, item_id: str | None, now_ms: int, *, agent_busy: bool) -> Decision:
        turn = self._turn
        if turn is None or turn.state == "confirmed":
            self._turn = None
            return Decision(("answer",))
        if turn.state == "awaiting":
            return NOTHING
        if turn.echo_ms > turn.voiced_ms:
            return self._ignore("echo")
        if not agent_busy:
            # The agent has finished: nothing is left to protect, so this is a turn.
            self._turn = None
            return _CUT_ANSWER
        if turn.backchannel:
            return self._ignore("backchannel")
        if self.holds_for_words:
            turn.state = "awaiting"
            turn.deadline_ms = now_ms + TRANSCRIPT_WAIT_MS
            return NOTHING
        return self._ignore("short")

    def transcript(self, item_id: str | None, text: str) -> Decision:
        """A final input transcript: words that are not backchannels interrupt."""
        turn = self._turn
        if turn is None or turn.state == "confirmed":
            return NOTHING
        if item_id is not None and turn.item_id is not None and item_id != turn.item_id:
            return NOTHING
        if turn.echo_ms > turn.voiced_ms:
            return NOTHING  # the agent's own words, transcribed from its echo
        verdict = is_backchannel(text, self.policy.backchannels)
        if verdict is False:
            if turn.state == "awaiting":
                self._turn = None
                return _CUT_ANSWER
            return self._confirm(turn, [])
        if verdict is True:
            turn.backchannel = True
        if turn.state == "awaiting":
            return self._ignore("backchannel" if verdict else "short")
        return NOTHING

    def tick(self, now_ms: int) -> Decision:
        """A pending turn that ended and got no transcript in time is decided without."""
        turn = self._turn
        if turn is None or turn.state != "awaiting" or now_ms < turn.deadline_ms:
            return NOTHING
        if turn.voiced_ms >= self.policy.min_speech_ms and turn.voiced_ms > 0:
            self._turn = None
            return _CUT_ANSWER
        return self._ignore("short")

    # ------------------------------------------------------------------ decisions

    def _persisted(self, turn: _Turn) -> bool:
        needed = self.policy.min_speech_ms
        if turn.voiced_ms <= 0 or turn.voiced_ms < needed:
            return False
        # With transcription, speech short enough to be "mm-hm" waits for its words.
        return not (self.holds_for_words and turn.voiced_ms < self.policy.backchannel_max_ms)

    def _confirm(self, turn: _Turn, actions: list[Action]) -> Decision:
        turn.state = "confirmed"
        return Decision((*actions, "cut"))

    def _ignore(self, reason: IgnoredAs) -> Decision:
        self._turn = None
        self.ignored[reason] += 1
        return Decision(("restore",), ignored=reason)
