"""The turn guard judges echo only when a verdict can change a decision, and then judges
it exactly as if every frame had been judged on arrival."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from telephony_agent.call.barge_in import TurnPolicy
from telephony_agent.call.turn_guard import TurnGuard
from tests.audio.test_echo_guard import _line, _sample

RATE = 8000
FRAME = RATE // 50


def _guard() -> TurnGuard:
    return TurnGuard(TurnPolicy(), RATE, guarded=True, transcription=False)


def _play(
    guard: TurnGuard, played: NDArray[np.int16], inbound: NDArray[np.int16], frames: range
) -> list[str]:
    actions: list[str] = []
    for k in frames:
        i = k * FRAME
        guard.played(played[i : i + FRAME])
        actions.extend(guard.heard(inbound[i : i + FRAME], agent_busy=True).actions)
    return actions


def test_echo_while_no_turn_is_judged_costs_no_search_and_a_turn_of_echo_is_ignored() -> None:
    played, inbound, _ = _line(RATE, delay_ms=200, echo_db=-15.0, noise_dbfs=-60.0)
    guard = _guard()
    assert guard.echo is not None
    assert _play(guard, played, inbound, range(0, 60)) == []
    assert guard.echo.searches == 0  # the agent talks over its echo: nothing to decide
    # The server's VAD takes the echo for speech: the frames before it are judged now,
    # as echo, and while the turn is judged each frame is, so the echo never cuts.
    actions: list[str] = list(guard.speech_started("item-1", agent_busy=True).actions)
    assert guard.echo.searches > 0
    actions += _play(guard, played, inbound, range(60, 110))
    assert "cut" not in actions
    stopped = guard.speech_stopped("item-1", 2200, agent_busy=True)
    assert stopped.ignored == "echo"


def test_the_caller_talking_over_the_echo_ducks_then_cuts() -> None:
    caller = _sample("booking/keypad_digits.wav", RATE)
    played, inbound, talking = _line(
        RATE, delay_ms=200, echo_db=-15.0, noise_dbfs=-60.0, caller=caller, caller_at_ms=1200
    )
    guard = _guard()
    assert guard.echo is not None
    first_word = int(np.argmax(talking))
    before = _play(guard, played, inbound, range(0, first_word + 5))
    assert before == []
    searches = guard.echo.searches
    started = guard.speech_started("item-1", agent_busy=True)
    assert "duck" in started.actions
    actions = list(started.actions) + _play(
        guard, played, inbound, range(first_word + 5, first_word + 40)
    )
    assert actions.count("cut") == 1
    assert searches == 0 < guard.echo.searches


def test_judging_on_demand_decides_every_turn_as_judging_every_frame_did() -> None:
    """Turns started at many points of a line with echo and the caller: the decisions
    are the same as from a guard that judged every frame on arrival."""
    caller = _sample("booking/keypad_digits.wav", RATE)
    played, inbound, _ = _line(
        RATE, delay_ms=300, echo_db=-12.0, noise_dbfs=-55.0, caller=caller, caller_at_ms=900
    )
    total = played.size // FRAME
    for start in range(20, total - 30, 17):
        lazy, eager = _guard(), _guard()
        assert lazy.echo is not None and eager.echo is not None
        decisions: list[list[str]] = [[], []]
        for k in range(start + 30):
            i = k * FRAME
            for n, guard in enumerate((lazy, eager)):
                guard.played(played[i : i + FRAME])
                if k == start:
                    decisions[n].extend(guard.speech_started("t", agent_busy=True).actions)
                if guard is eager:
                    eager.echo.verdicts(1)  # judged on arrival, as before
                decisions[n].extend(guard.heard(inbound[i : i + FRAME], agent_busy=True).actions)
                if guard is eager:
                    eager.echo.verdicts(1)
        assert decisions[0] == decisions[1], start
