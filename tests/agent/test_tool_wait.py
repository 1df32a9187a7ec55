"""Tool-wait keys: one feedback choice per table, inherited as a group, files checked at load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from telephony_agent.agent import DEFAULT_FILLER_INSTRUCTIONS, ProfileDefaults, ToolWait
from telephony_agent.config import agent_defaults, load_settings
from telephony_agent.errors import ConfigError

from .support import DEFAULTS, ORIGIN, one, parse, write_wav


def error_of(text: str, base_dir: Path) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, base_dir=base_dir)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{ORIGIN}: ")
    return message


def test_without_keys_a_profile_waits_in_silence_with_the_defaults() -> None:
    wait = one("").tool_wait
    assert wait == ToolWait()
    assert (wait.feedback, wait.filler_after_s, wait.tool_timeout_s) == ("none", 1.2, 30.0)
    assert wait.filler_instructions == DEFAULT_FILLER_INSTRUCTIONS


def test_each_choice_key(tmp_path: Path) -> None:
    write_wav(tmp_path / "moment.wav")
    write_wav(tmp_path / "music.wav")
    assert one('filler = "model"\n').tool_wait.feedback == "model"
    recording = one('filler_audio = "moment.wav"\n', base_dir=tmp_path).tool_wait
    assert (recording.feedback, recording.audio) == ("recording", tmp_path / "moment.wav")
    music = one('hold_audio = "music.wav"\n', base_dir=tmp_path).tool_wait
    assert (music.feedback, music.audio) == ("hold", tmp_path / "music.wav")
    tone = one('hold_audio = "tone"\ntool_timeout_s = 8\nfiller_after_s = 0.5\n').tool_wait
    assert (tone.feedback, tone.audio, tone.tool_timeout_s, tone.filler_after_s) == (
        "hold",
        None,
        8.0,
        0.5,
    )


def test_a_profile_choice_replaces_the_inherited_one_and_timings_inherit_one_by_one() -> None:
    defaults = dataclasses.replace(
        DEFAULTS, tool_wait=ToolWait(feedback="hold", filler_after_s=2.0, tool_timeout_s=9.0)
    )
    inherited = one("", defaults=defaults).tool_wait
    assert (inherited.feedback, inherited.filler_after_s) == ("hold", 2.0)
    own = one('filler = "model"\nfiller_after_s = 0.8\n', defaults=defaults).tool_wait
    assert (own.feedback, own.audio, own.filler_after_s, own.tool_timeout_s) == (
        "model",
        None,
        0.8,
        9.0,
    )
    assert one('filler = "none"\n', defaults=defaults).tool_wait.feedback == "none"


def test_two_choices_in_one_table_are_an_error(tmp_path: Path) -> None:
    table = '[[profiles]]\nname = "p"\nfiller = "model"\nhold_audio = "tone"\n'
    message = error_of(table, tmp_path)
    assert message == (
        f"{ORIGIN}: profiles[p].hold_audio = 'tone': filler is set too; "
        "expected only one of filler, filler_audio and hold_audio"
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('filler = "yes"', "profiles[p].filler = 'yes': expected one of 'none', 'model'"),
        ("filler_after_s = 0", "filler_after_s = 0: expected a number from 0.2 to 30"),
        ("tool_timeout_s = 900", "tool_timeout_s = 900: expected a number from 1 to 600"),
        ('filler_instructions = " "', "filler_instructions = ' ': expected a non-empty"),
        ('hold_audio = "missing.wav"', "profiles[p].hold_audio = 'missing.wav': no such file"),
        ('filler_audio = "tone"', "profiles[p].filler_audio = 'tone': no such file"),
        ("fillr = 1", "unknown key profiles[p].fillr (did you mean profiles[p].filler?)"),
    ],
)
def test_bad_values_are_one_line_naming_the_key(tmp_path: Path, line: str, expected: str) -> None:
    assert expected in error_of(f'[[profiles]]\nname = "p"\n{line}\n', tmp_path)


def test_a_recording_longer_than_a_minute_is_refused(tmp_path: Path) -> None:
    write_wav(tmp_path / "long.wav", rate=8000, frames=8000 * 61)
    message = error_of('[[profiles]]\nname = "p"\nhold_audio = "long.wav"\n', tmp_path)
    assert "lasts 61.0 s; expected a recording of at most 60 s" in message


def test_agent_keys_resolve_against_the_settings_file_and_reach_every_profile(
    tmp_path: Path,
) -> None:
    (tmp_path / "sounds").mkdir()
    write_wav(tmp_path / "sounds" / "music.wav")
    config = tmp_path / "agent.toml"
    config.write_text(
        '[agent]\nhold_audio = "sounds/music.wav"\ntool_timeout_s = 12\n'
        '[[profiles]]\nname = "quiet"\nnumbers = ["1"]\nfiller = "none"\n'
        '[[profiles]]\nname = "music"\nnumbers = ["2"]\n',
        encoding="utf-8",
    )
    settings = load_settings(config, environ={})
    music = tmp_path / "sounds" / "music.wav"
    assert settings.agent.hold_audio == str(music)
    quiet, held = settings.profiles
    assert (quiet.tool_wait.feedback, quiet.tool_wait.tool_timeout_s) == ("none", 12.0)
    assert (held.tool_wait.feedback, held.tool_wait.audio) == ("hold", music)
    assert agent_defaults(settings.agent).tool_wait == held.tool_wait
    assert held.describe()["hold_audio"] == str(music)


def test_agent_keys_are_checked_as_a_profiles_are(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\nfiller = "model"\nfiller_audio = "x.wav"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    assert str(info.value) == (
        f"{config}: agent.filler_audio = 'x.wav': filler is set too; "
        "expected only one of filler, filler_audio and hold_audio"
    )


def test_the_environment_can_ask_for_the_hold_tone() -> None:
    settings = load_settings(None, environ={"TELEPHONY_AGENT_AGENT_HOLD_AUDIO": "tone"})
    assert agent_defaults(settings.agent).tool_wait.feedback == "hold"
    assert ProfileDefaults(instructions="x").tool_wait == ToolWait()
