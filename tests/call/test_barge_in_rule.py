"""The barge-in rule without sockets: what ducks, what cuts, what is answered, and once."""

from __future__ import annotations

import pytest

from telephony_agent.call.backchannel import (
    DEFAULT_BACKCHANNELS,
    is_backchannel,
    parse_backchannels,
)
from telephony_agent.call.barge_in import (
    TRANSCRIPT_WAIT_MS,
    BargeInDecider,
    Decision,
    TurnPolicy,
)

WORDS = parse_backchannels(DEFAULT_BACKCHANNELS)


def _decider(*, transcription: bool = False, **policy: object) -> BargeInDecider:
    return BargeInDecider(TurnPolicy(**policy), guarded=True, transcription=transcription)  # type: ignore[arg-type]


def _frames(
    decider: BargeInDecider, count: int, *, speech: bool = True, echo: bool = False
) -> list[Decision]:
    return [decider.frame(20, speech=speech, echo=echo, agent_busy=True) for _ in range(count)]


def _actions(decisions: list[Decision]) -> list[str]:
    return [a for d in decisions for a in d.actions]


def test_speech_over_the_agent_ducks_then_cuts_once_it_has_lasted_min_speech_ms() -> None:
    decider = _decider()
    _frames(decider, 3)  # the server heard 60 ms before it said speech_started
    started = decider.speech_started("u1", agent_busy=True, echo_possible=True)
    assert started.actions == ("duck",)
    later = _frames(decider, 10)
    assert _actions(later[:9]) == [] and later[9].actions == ("cut",)  # 3 + 10 frames
    assert _actions(_frames(decider, 3)) == []  # cut once
    assert decider.speech_stopped("u1", 5000, agent_busy=False).actions == ("answer",)


def test_a_short_burst_ducks_and_restores_and_is_not_answered() -> None:
    decider = _decider()
    _frames(decider, 3)
    assert decider.speech_started("u1", agent_busy=True, echo_possible=True).actions == ("duck",)
    _frames(decider, 2)
    _frames(decider, 20, speech=False)
    stopped = decider.speech_stopped("u1", 1000, agent_busy=True)
    assert stopped == Decision(("restore",), ignored="short")
    assert decider.ignored == {"short": 1}


def test_echo_does_not_count_and_is_never_ducked_nor_answered() -> None:
    decider = _decider()
    _frames(decider, 4, echo=True)
    assert decider.speech_started("u1", agent_busy=True, echo_possible=True).actions == ()
    assert _actions(_frames(decider, 100, echo=True)) == []
    # A frame misjudged now and then is taken back by the echo frames around it.
    for _ in range(20):
        assert _actions(_frames(decider, 1) + _frames(decider, 2, echo=True)) in ([], ["duck"])
    stopped = decider.speech_stopped("u1", 5000, agent_busy=True)
    assert stopped.ignored == "echo" and "answer" not in stopped.actions


def test_the_caller_talking_over_the_echo_is_an_interruption() -> None:
    decider = _decider()
    _frames(decider, 4, echo=True)
    decider.speech_started("u1", agent_busy=True, echo_possible=True)
    _frames(decider, 30, echo=True)
    actions = _actions(_frames(decider, 13))
    assert actions == ["duck", "cut"]


def test_with_transcription_a_backchannel_is_held_for_its_words_and_not_answered() -> None:
    decider = _decider(transcription=True)
    assert decider.speech_started("u1", agent_busy=True, echo_possible=True).actions == ("duck",)
    assert _actions(_frames(decider, 20)) == []  # 400 ms: could be "mm-hm"
    assert decider.speech_stopped("u1", 2000, agent_busy=True) == Decision()
    heard = decider.transcript("u1", "Mm-hmm.")
    assert heard == Decision(("restore",), ignored="backchannel")


def test_with_transcription_other_words_cut_and_are_answered_once() -> None:
    decider = _decider(transcription=True)
    decider.speech_started("u1", agent_busy=True, echo_possible=True)
    _frames(decider, 20)
    decider.speech_stopped("u1", 2000, agent_busy=True)
    assert decider.transcript("u1", "Wait, no.").actions == ("cut", "answer")
    assert decider.tick(2000 + TRANSCRIPT_WAIT_MS) == Decision()


def test_longer_than_any_backchannel_cuts_without_waiting_for_words() -> None:
    decider = _decider(transcription=True, backchannel_max_ms=600)
    decider.speech_started("u1", agent_busy=True, echo_possible=True)
    decisions = _frames(decider, 30)
    assert _actions(decisions) == ["cut"] and decisions[29].actions == ("cut",)


def test_no_transcript_in_time_decides_by_duration() -> None:
    decider = _decider(transcription=True)
    decider.speech_started("u1", agent_busy=True, echo_possible=True)
    _frames(decider, 20)
    decider.speech_stopped("u1", 2000, agent_busy=True)
    assert decider.tick(2000 + TRANSCRIPT_WAIT_MS - 20) == Decision()
    assert decider.tick(2000 + TRANSCRIPT_WAIT_MS).actions == ("cut", "answer")
    # A short one is restored instead.
    _frames(decider, 10, speech=False)
    decider.speech_started("u2", agent_busy=True, echo_possible=True)
    _frames(decider, 5)
    decider.speech_stopped("u2", 4000, agent_busy=True)
    assert decider.tick(4000 + TRANSCRIPT_WAIT_MS).ignored == "short"


def test_the_transcript_of_the_agents_echo_never_cuts() -> None:
    decider = _decider(transcription=True)
    decider.speech_started("u1", agent_busy=True, echo_possible=True)
    _frames(decider, 40, echo=True)
    assert decider.transcript("u1", "I would like to book a flight").actions == ()


def test_speech_while_the_agent_is_quiet_is_a_turn_at_once() -> None:
    decider = _decider()
    assert decider.speech_started("u1", agent_busy=False, echo_possible=False).actions == ("cut",)
    assert decider.speech_stopped("u1", 900, agent_busy=False).actions == ("answer",)


def test_a_short_turn_that_outlives_the_agents_speech_is_answered() -> None:
    """Nothing is left to protect once the agent has finished: the turn is answered."""
    decider = _decider()
    decider.speech_started("u1", agent_busy=True, echo_possible=True)
    _frames(decider, 3)
    assert decider.speech_stopped("u1", 900, agent_busy=False).actions == ("cut", "answer")


def test_unguarded_every_speech_started_cuts_at_once() -> None:
    decider = BargeInDecider(TurnPolicy(), guarded=False, transcription=True)
    assert decider.speech_started("u1", agent_busy=True, echo_possible=True).actions == ("cut",)
    policy_off = TurnPolicy(min_speech_ms=0, echo_guard=False)
    assert not policy_off.guarded
    decider = BargeInDecider(policy_off, guarded=True, transcription=False)
    assert decider.speech_started("u1", agent_busy=True, echo_possible=True).actions == ("cut",)


def test_min_speech_ms_zero_with_the_echo_guard_cuts_at_the_first_non_echo_frame() -> None:
    decider = _decider(min_speech_ms=0)
    _frames(decider, 2, echo=True)
    assert decider.speech_started("u1", agent_busy=True, echo_possible=True).actions == ()
    assert _actions(_frames(decider, 3, echo=True)) == []
    assert _actions(_frames(decider, 1)) == ["duck", "cut"]


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("Mm-hmm.", True),
        ("mhm", True),
        ("Uh huh", True),
        ("uh-huh!", True),
        ("Yeah, yeah.", True),
        ("OK", True),
        ("Okay…", True),
        ("Угу.", True),
        ("Ага", True),
        ("Да-да", True),
        ("Yeah, but wait", False),
        ("Stop", False),
        ("Нет", False),
        ("[caller speech 0.40 s]", None),
        ("(laughs)", None),
        ("", None),
    ],
)
def test_backchannel_words_however_they_are_spelled(text: str, verdict: bool | None) -> None:
    assert is_backchannel(text, WORDS) is verdict


def test_backchannels_are_configurable_and_can_be_none() -> None:
    assert is_backchannel("yes please", parse_backchannels("yes, please")) is True
    assert is_backchannel("yeah", parse_backchannels("")) is False
