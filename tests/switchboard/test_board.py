"""Admission, refusal, release and reload, decided without any I/O."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from telephony_agent.audio.wav import WavWriter
from telephony_agent.call.hold import HoldAudio
from telephony_agent.config import load_settings
from telephony_agent.config_provider import local_endpoint
from telephony_agent.errors import ConfigError
from telephony_agent.switchboard import Admission, CallRequest, Deployment, Refusal, Switchboard

PROFILES = """
[sip]
max_calls = 2

[[profiles]]
name = "sales"
numbers = ["sales"]
instructions = "Sales for {company}."
variables = { company = "Acme" }

[[profiles]]
name = "cheap"
numbers = ["cheap"]
model = "small-model"
"""


def _deployment(tmp_path: Path, text: str = PROFILES) -> Deployment:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    settings = load_settings(path, environ={})
    return Deployment.build(
        settings, local_endpoint(settings, 9), "local", environ={}, local_port=9
    )


def _request(dialled: str = "", profile: str | None = None) -> CallRequest:
    return CallRequest(kind="sip", external_id=f"call-{dialled}", dialled=dialled, profile=profile)


def test_admission_chooses_the_profile_and_holds_a_slot(tmp_path: Path) -> None:
    board = Switchboard(_deployment(tmp_path))
    sales = board.admit(_request("sales"))
    other = board.admit(_request("anyone"))
    assert isinstance(sales, Admission) and isinstance(other, Admission)
    assert (sales.profile.name, other.profile.name) == ("sales", "default")
    assert board.active_calls == 2
    refused = board.admit(_request("sales"))
    assert isinstance(refused, Refusal) and refused.reason == "over_capacity"
    assert "2 call slots" in refused.message
    sales.release("setup_failed")
    sales.release("setup_failed")  # idempotent
    assert board.active_calls == 1
    assert board.stats.abandoned == 1
    assert isinstance(board.admit(_request("sales")), Admission)


def test_a_named_profile_wins_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    board = Switchboard(_deployment(tmp_path))
    named = board.admit(_request("sales", profile="cheap"))
    assert isinstance(named, Admission) and named.profile.name == "cheap"
    unknown = board.admit(_request(profile="nobody"))
    assert isinstance(unknown, Refusal) and unknown.reason == "unknown_profile"
    assert board.active_calls == 1


def test_draining_refuses_new_calls(tmp_path: Path) -> None:
    board = Switchboard(_deployment(tmp_path))
    board.drain()
    refused = board.admit(_request("sales"))
    assert isinstance(refused, Refusal) and refused.reason == "draining"
    assert board.stats.refused_draining == 1


def test_each_call_gets_its_profile_session_and_tools(tmp_path: Path) -> None:
    board = Switchboard(_deployment(tmp_path))
    sales = board.admit(_request("sales"))
    assert isinstance(sales, Admission)
    session = sales.new_session()
    assert session.config.instructions == "Sales for Acme."
    assert sorted(sales.tools.names()) == ["end_call", "send_dtmf", "transfer_call"]
    cheap = board.admit(_request("cheap"))
    assert isinstance(cheap, Admission)
    # A profile with its own model gets its own endpoint; the others share the default.
    assert "small-model" in cheap.endpoint.url
    assert "small-model" not in sales.endpoint.url


async def test_reload_changes_new_calls_only(tmp_path: Path) -> None:
    board = Switchboard(_deployment(tmp_path))
    live = board.admit(_request("sales"))
    assert isinstance(live, Admission)
    (tmp_path / "v2").mkdir()
    board.reload(_deployment(tmp_path / "v2", PROFILES.replace("{company}", "the new {company}")))
    new = board.admit(_request("sales"))
    assert isinstance(new, Admission)
    assert live.new_session().config.instructions == "Sales for Acme."
    assert new.new_session().config.instructions == "Sales for the new Acme."
    live.release("done")
    new.release("done")
    await board.close()


def test_a_bad_greeting_recording_stops_the_deployment(tmp_path: Path) -> None:
    (tmp_path / "broken.wav").write_bytes(b"RIFF0000WAVEnot really")
    text = '[[profiles]]\nname = "x"\ngreeting_audio = "broken.wav"\n'
    with pytest.raises(ConfigError, match=r"profiles\[x\]\.greeting_audio"):
        _deployment(tmp_path, text)


def test_hold_and_filler_recordings_are_decoded_once_and_ready_at_every_leg_rate(
    tmp_path: Path,
) -> None:
    t = np.arange(8000 * 2) / 8000
    music = (3000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    with WavWriter(tmp_path / "music.wav", 8000) as wav:
        wav.write(music)
    text = (
        '[agent]\nhold_audio = "music.wav"\n'
        '[[profiles]]\nname = "a"\nnumbers = ["a"]\n'
        '[[profiles]]\nname = "b"\nnumbers = ["b"]\ntool_timeout_s = 5\n'
        '[[profiles]]\nname = "once"\nnumbers = ["once"]\nfiller_audio = "music.wav"\n'
        '[[profiles]]\nname = "tone"\nnumbers = ["tone"]\nhold_audio = "tone"\n'
        '[[profiles]]\nname = "model"\nnumbers = ["model"]\nfiller = "model"\n'
    )
    deployment = _deployment(tmp_path, text)
    audio = deployment.tool_wait_audio
    assert audio["a"] is audio["b"] is audio["default"]  # one file, one decoded copy
    assert audio["once"] is not audio["a"] and not audio["once"].loop
    assert set(audio) == {"a", "b", "default", "once"}
    assert audio["a"].prepared_rates >= {8000, 16000, 48000}  # at load, not at a call
    feedback = {p.name: deployment.tool_feedback(p) for p in deployment.profiles.profiles}
    assert (feedback["b"].kind, feedback["b"].timeout_ms, feedback["b"].audio) == (
        "hold",
        5000,
        audio["a"],
    )
    assert feedback["tone"].audio is HoldAudio.tone()
    assert (feedback["model"].kind, feedback["model"].audio) == ("model", None)
    assert feedback["once"].kind == "recording"
