"""`[turns]` reaches the session and the call: who interrupts, who answers."""

from __future__ import annotations

from telephony_agent.call.barge_in import TurnPolicy
from telephony_agent.config import load_settings
from telephony_agent.realtime.session_config import VadConfig
from telephony_agent.switchboard.session import session_config, turn_policy


def _vad(overrides: dict[str, dict[str, object]]) -> tuple[VadConfig, TurnPolicy]:
    settings = load_settings(None, environ={}, overrides=overrides)
    config = session_config(settings, "local")
    assert config.vad is not None
    return config.vad, turn_policy(settings)


def test_with_the_guard_the_server_neither_interrupts_nor_answers() -> None:
    vad, policy = _vad({})
    assert policy.guarded
    assert (vad.interrupt_response, vad.create_response) == (False, False)
    assert policy.min_speech_ms == 250 and "mhm" in policy.backchannels


def test_without_the_guard_the_server_interrupts_and_answers_as_vad_says() -> None:
    vad, policy = _vad({"turns": {"min_speech_ms": 0, "echo_guard": False}})
    assert not policy.guarded
    assert (vad.interrupt_response, vad.create_response) == (True, True)
    vad, _ = _vad(
        {"turns": {"min_speech_ms": 0, "echo_guard": False}, "vad": {"interrupt_response": False}}
    )
    assert (vad.interrupt_response, vad.create_response) == (False, True)


def test_the_echo_guard_alone_still_takes_the_decision_from_the_server() -> None:
    vad, policy = _vad({"turns": {"min_speech_ms": 0}})
    assert policy.guarded and not vad.interrupt_response and not vad.create_response
