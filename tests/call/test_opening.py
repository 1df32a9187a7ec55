"""How an outbound call opens: wait for the callee, and answering-machine actions."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from telephony_agent.call.opening import OpeningSettings, OutboundOpening

RATE = 8000
FRAME = RATE // 50


def _noise(ms: int, dbfs: float, seed: int) -> NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 32768 * 10 ** (dbfs / 20), RATE * ms // 1000)


def _talk(ms: int) -> NDArray[np.float64]:
    return _noise(ms, -20.0, ms)


def _quiet(ms: int) -> NDArray[np.float64]:
    return _noise(ms, -65.0, ms + 1)


def _beep(ms: int) -> NDArray[np.float64]:
    t = np.arange(RATE * ms // 1000) / RATE
    return 8000 * np.sin(2 * np.pi * 1000 * t)


def _run(opening: OutboundOpening, *parts: NDArray[np.float64]) -> list[tuple[int, str]]:
    audio = np.clip(np.concatenate(parts), -32768, 32767).astype(np.int16)
    actions: list[tuple[int, str]] = []
    for index in range(len(audio) // FRAME):
        opening.audio(audio[index * FRAME : (index + 1) * FRAME])
        action = opening.tick((index + 1) * 20)
        if action is not None:
            actions.append(((index + 1) * 20, action))
    return actions


def test_without_detection_a_silent_callee_is_greeted_after_the_wait() -> None:
    opening = OutboundOpening(OpeningSettings(greet_after_s=2.0), RATE)
    assert not opening.holds_responses
    assert _run(opening, _quiet(3000)) == [(2000, "greet")]


def test_without_detection_a_callee_who_speaks_is_answered_by_the_model() -> None:
    opening = OutboundOpening(OpeningSettings(greet_after_s=2.0), RATE)
    assert opening.tick(500) is None
    opening.callee_spoke()
    assert opening.tick(520) == "proceed"
    assert opening.tick(2500) is None  # once


def test_a_person_is_greeted_once_the_detector_says_so() -> None:
    opening = OutboundOpening(OpeningSettings(amd="detect"), RATE)
    assert opening.holds_responses
    actions = _run(opening, _quiet(400), _talk(700), _quiet(2000))
    assert [a for _, a in actions] == ["greet"]
    assert opening.verdict is not None and opening.verdict.kind == "human"
    assert not opening.holds_responses


def test_a_machine_is_hung_up_on() -> None:
    opening = OutboundOpening(OpeningSettings(amd="detect", on_machine="hangup"), RATE)
    actions = _run(opening, _quiet(300), _talk(4000))
    assert [a for _, a in actions] == ["hangup"]
    assert opening.verdict is not None and opening.verdict.reason == "long_greeting"


def test_a_message_waits_for_the_beep_and_no_response_plays_before() -> None:
    settings = OpeningSettings(amd="detect", on_machine="leave_message", machine_message="Hi")
    opening = OutboundOpening(settings, RATE)
    actions = _run(opening, _quiet(300), _talk(4000), _quiet(500), _beep(400), _quiet(1000))
    (at, action), *rest = actions
    assert action == "leave_message" and not rest
    assert 4800 + 100 <= at <= 4800 + 300  # on the beep, not over the greeting
    assert not opening.holds_responses


def test_continue_treats_a_machine_like_a_person() -> None:
    opening = OutboundOpening(OpeningSettings(amd="detect", on_machine="continue"), RATE)
    assert [a for _, a in _run(opening, _talk(4000))] == ["greet"]
