"""`[[profiles]]` parsing: inheritance from `[agent]`, and one clear line for every bad value."""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from telephony_agent.agent import (
    BUILTIN_CALL_TOOLS,
    DEFAULT_DTMF_MESSAGE,
    Profile,
    ProfileDefaults,
    parse_profile_tables,
)
from telephony_agent.errors import ConfigError

from .support import DEFAULTS, ORIGIN, one, parse, write_wav


def error_of(
    text: str, *, defaults: ProfileDefaults = DEFAULTS, base_dir: Path | None = None
) -> str:
    """The one-line message of the ConfigError that parsing `text` raises."""
    with pytest.raises(ConfigError) as info:
        parse(text, defaults=defaults, base_dir=base_dir)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{ORIGIN}: ")
    return message


def test_absent_profiles_key_gives_no_profiles() -> None:
    assert parse("") == ()


def test_absent_keys_inherit_from_agent_defaults() -> None:
    profile = one('numbers = ["booking"]\n')
    assert profile == Profile(
        name="p",
        numbers=("booking",),
        instructions=DEFAULTS.instructions,
        greeting=DEFAULTS.greeting,
        voice="marina",
        max_duration_s=600.0,
    )
    assert profile.is_default is False
    assert profile.provider is None and profile.model is None and profile.language is None
    assert profile.tools is None
    assert (
        profile.effective_tools == BUILTIN_CALL_TOOLS == ("end_call", "transfer_call", "send_dtmf")
    )
    assert profile.timezone is None and profile.greeting_audio is None
    assert profile.dtmf_inter_digit_s == 3.0
    assert profile.dtmf_max_digits == 20
    assert profile.dtmf_terminator == "#"
    assert profile.dtmf_message == DEFAULT_DTMF_MESSAGE == "The caller typed: {digits}"


def test_dtmf_defaults_come_from_agent() -> None:
    defaults = ProfileDefaults(
        instructions="x",
        dtmf_inter_digit_s=1.5,
        dtmf_max_digits=4,
        dtmf_terminator="*",
        dtmf_message="Digits: {digits}",
    )
    profile = one("", defaults=defaults)
    assert (profile.dtmf_inter_digit_s, profile.dtmf_max_digits) == (1.5, 4)
    assert (profile.dtmf_terminator, profile.dtmf_message) == ("*", "Digits: {digits}")


def test_every_key_overrides(tmp_path: Path) -> None:
    write_wav(tmp_path / "hello.wav")
    profile = one(
        """
numbers = ["+7 (495) 123-45-67", "booking"]
match = '^\\+7495\\d+$'
default = true
instructions = "You book rooms at {hotel} in {city}."
greeting = "Say hello from {hotel}."
greeting_audio = "hello.wav"
voice = "alena"
provider = "yandex-legacy"
model = "speech-realtime-250923"
language = "ru-RU"
max_duration_s = 120
tools = ["check_availability", "end_call"]
variables = { hotel = "Riverside", city = "Moscow" }
timezone = "Europe/Moscow"
dtmf_inter_digit_s = 0.5
dtmf_max_digits = 6
dtmf_terminator = ""
dtmf_message = "Keys: {digits}."
""",
        base_dir=tmp_path,
    )
    assert profile.numbers == ("+7 (495) 123-45-67", "booking")
    assert profile.match is not None and profile.match.pattern == r"^\+7495\d+$"
    assert profile.is_default is True
    assert profile.instructions == "You book rooms at {hotel} in {city}."
    assert profile.greeting == "Say hello from {hotel}."
    assert profile.greeting_audio == (tmp_path / "hello.wav").resolve()
    assert profile.greeting_audio.is_absolute()
    assert (profile.voice, profile.provider, profile.model) == (
        "alena",
        "yandex-legacy",
        "speech-realtime-250923",
    )
    assert profile.language == "ru-RU"
    assert profile.max_duration_s == 120.0
    assert profile.tools == ("check_availability", "end_call")
    assert profile.effective_tools == ("check_availability", "end_call")
    assert dict(profile.variables) == {"hotel": "Riverside", "city": "Moscow"}
    assert isinstance(profile.variables, MappingProxyType)
    assert profile.timezone == ZoneInfo("Europe/Moscow")
    assert (profile.dtmf_inter_digit_s, profile.dtmf_max_digits) == (0.5, 6)
    assert (profile.dtmf_terminator, profile.dtmf_message) == ("", "Keys: {digits}.")
    assert profile.placeholders[-2:] == ("hotel", "city")


def test_empty_tools_list_means_no_tools_at_all() -> None:
    profile = one("tools = []\n")
    assert profile.tools == ()
    assert profile.effective_tools == ()


def test_empty_greeting_turns_an_inherited_greeting_off() -> None:
    assert one('greeting = ""\n').greeting is None
    assert one("", defaults=ProfileDefaults(instructions="x")).greeting is None


def test_profiles_keep_file_order() -> None:
    names = [p.name for p in parse('[[profiles]]\nname = "b"\n[[profiles]]\nname = "a"\n')]
    assert names == ["b", "a"]


def test_profile_is_hashable_and_describes_itself(tmp_path: Path) -> None:
    profile = one('variables = { hotel = "R" }\ntimezone = "UTC"\nnumbers = ["1"]\n')
    assert hash(profile) == hash(profile)
    described = profile.describe()
    assert described["name"] == "p"
    assert described["numbers"] == ["1"]
    assert described["variables"] == {"hotel": "R"}
    assert described["timezone"] == "UTC"
    assert described["tools"] == list(BUILTIN_CALL_TOOLS)
    assert "provider" not in described


# Each bad value: the key it names, its value and what was expected, in one line.
BAD_VALUES = [
    ("voise = 'x'", "unknown key profiles[p].voise (did you mean profiles[p].voice?)"),
    ("api_key = 'sk-secret-value'", "unknown key profiles[p].api_key"),
    ("numbers = 'booking'", "profiles[p].numbers = 'booking': expected a list of strings"),
    (
        "numbers = [74951234567]",
        "profiles[p].numbers[0] = 74951234567: expected a string in quotes",
    ),
    ("numbers = ['']", "profiles[p].numbers[0] = '': expected a non-empty string"),
    ("numbers = ['()']", "profiles[p].numbers[0] = '()': expected a number or a name"),
    (
        "numbers = ['+7 495 1', '+7-495-1']",
        "profiles[p].numbers[1] = '+7-495-1': expected each number once, numbers[0]",
    ),
    ("match = 5", "profiles[p].match = 5: expected a string"),
    (
        "match = '(7'",
        "profiles[p].match = '(7': expected a regular expression (missing ), unterminated "
        "subpattern at position 0)",
    ),
    ("default = 'yes'", "profiles[p].default = 'yes': expected true or false"),
    ("instructions = ''", "profiles[p].instructions = '': expected a non-empty string"),
    ("instructions = 3", "profiles[p].instructions = 3: expected a string"),
    ("greeting = []", "profiles[p].greeting = []: expected a string"),
    ("voice = ''", "profiles[p].voice = '': expected a non-empty string"),
    (
        "provider = 'yandx'",
        "profiles[p].provider = 'yandx': expected one of 'yandex', 'yandex-legacy', 'openai', "
        "'custom', 'local' (did you mean 'yandex'?)",
    ),
    ("model = 1", "profiles[p].model = 1: expected a string"),
    ("language = 'Russian'", "profiles[p].language = 'Russian': expected a language tag"),
    ("language = 'ru_RU'", "profiles[p].language = 'ru_RU': expected a language tag"),
    ("max_duration_s = 0.5", "profiles[p].max_duration_s = 0.5: expected a number from 1 to 86400"),
    ("max_duration_s = 86401", "profiles[p].max_duration_s = 86401: expected a number from 1"),
    ("max_duration_s = true", "profiles[p].max_duration_s = True: expected a number from 1"),
    ("max_duration_s = '60'", "profiles[p].max_duration_s = '60': expected a number from 1"),
    ("tools = 'end_call'", "profiles[p].tools = 'end_call': expected a list of strings"),
    (
        "tools = ['end_call', 'check_availabilty']",
        "profiles[p].tools[1] = 'check_availabilty': unknown tool (did you mean "
        "'check_availability'?); known tools: book_room, check_availability, end_call, "
        "send_dtmf, transfer_call",
    ),
    ("tools = ['end_call', 'end_call']", "profiles[p].tools[1] = 'end_call': expected each tool"),
    ("variables = 'hotel'", "profiles[p].variables = 'hotel': expected a table of strings"),
    ("variables = { hotel = 5 }", "profiles[p].variables.hotel = 5: expected a string"),
    ("variables = { 2nd = 'x' }", "profiles[p].variables = '2nd': expected variable names"),
    (
        "variables = { caller = 'x' }",
        "profiles[p].variables.caller = 'x': {caller} is a built-in placeholder",
    ),
    (
        "timezone = 'Europe/Moscw'",
        "profiles[p].timezone = 'Europe/Moscw': expected an IANA time zone such as "
        "'Europe/Moscow' (did you mean 'Europe/Moscow'?)",
    ),
    ("timezone = 'Europe'", "profiles[p].timezone = 'Europe': expected an IANA time zone"),
    ("timezone = '../etc/passwd'", "profiles[p].timezone = '../etc/passwd': expected an IANA"),
    ("timezone = 3", "profiles[p].timezone = 3: expected a string"),
    (
        "dtmf_inter_digit_s = 0.1",
        "profiles[p].dtmf_inter_digit_s = 0.1: expected a number from 0.2 to 30",
    ),
    ("dtmf_inter_digit_s = 31", "profiles[p].dtmf_inter_digit_s = 31: expected a number from 0.2"),
    (
        "dtmf_max_digits = 0",
        "profiles[p].dtmf_max_digits = 0: expected a whole number from 1 to 64",
    ),
    ("dtmf_max_digits = 65", "profiles[p].dtmf_max_digits = 65: expected a whole number"),
    ("dtmf_max_digits = 2.5", "profiles[p].dtmf_max_digits = 2.5: expected a whole number"),
    (
        "dtmf_terminator = '0'",
        "profiles[p].dtmf_terminator = '0': expected one of '#', '*', ''",
    ),
    (
        "dtmf_message = 'Typed.'",
        "profiles[p].dtmf_message = 'Typed.': expected text containing {digits}",
    ),
    (
        "dtmf_message = 'Typed {digit}'",
        "profiles[p].dtmf_message = 'Typed {digit}': unknown placeholder {digit}; known "
        "placeholders: {digits}",
    ),
    ("greeting_audio = ''", "profiles[p].greeting_audio = '': expected a non-empty string"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_VALUES)
def test_bad_values_name_the_key(text: str, expected: str) -> None:
    assert expected in error_of('[[profiles]]\nname = "p"\n' + text + "\n")


def test_secret_looking_values_of_unknown_keys_are_not_echoed() -> None:
    message = error_of('[[profiles]]\nname = "p"\napi_key = "sk-secret-value"\n')
    assert "sk-secret-value" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[profiles]\nname = 'p'\n", "profiles = {'name': 'p'}: expected an array of tables"),
        ("profiles = ['p']\n", "profiles[0] = 'p': expected a table"),
        ("[[profiles]]\nvoice = 'x'\n", "profiles[0]: missing required key name"),
        ("[[profiles]]\nname = 'a b'\n", "profiles[0].name = 'a b': expected 1 to 64 letters"),
        ("[[profiles]]\nname = ''\n", "profiles[0].name = '': expected 1 to 64 letters"),
        ("[[profiles]]\nname = '" + "x" * 65 + "'\n", "profiles[0].name = 'xxx"),
        ("[[profiles]]\nname = 7\n", "profiles[0].name = 7: expected 1 to 64 letters"),
        (
            "[[profiles]]\nname = 'a'\n[[profiles]]\nname = 'b'\n[[profiles]]\nname = 'a'\n",
            "profiles[2].name = 'a': expected a unique name, profiles[0] already has it",
        ),
        (
            "[[profiles]]\nname = 'default'\n",
            "profiles[0].name = 'default': 'default' is kept for the default profile",
        ),
        (
            "[[profiles]]\nname = 'a'\ndefault = true\n[[profiles]]\nname = 'b'\n"
            "[[profiles]]\nname = 'c'\ndefault = true\n",
            "profiles[a].default and profiles[c].default are both true: expected at most one",
        ),
    ],
)
def test_structural_mistakes_name_the_table(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_a_profile_named_default_is_fine_when_marked_default() -> None:
    (profile,) = parse("[[profiles]]\nname = 'default'\ndefault = true\n")
    assert profile.is_default


def test_name_accepts_the_documented_alphabet() -> None:
    name = "Az09_.-" + "x" * 57
    assert parse(f"[[profiles]]\nname = '{name}'\n")[0].name == name


# Placeholders are checked when the file loads.
BAD_TEMPLATES = [
    (
        "Hello {hotl}",
        "unknown placeholder {hotl}; known placeholders: {caller}, {dialled}, {date}, "
        "{time}, {weekday}, {call_id}, {profile}",
    ),
    ("Hello {caller!r}", "placeholder {caller!r} has a conversion; expected {caller}"),
    ("Hello {caller:>10}", "placeholder {caller:>10} has a format spec; expected {caller}"),
    ("Hello {caller.x}", "placeholder {caller.x} uses attribute or index access"),
    ("Hello {caller[0]}", "placeholder {caller[0]} uses attribute or index access"),
    ("Hello {0}", "positional placeholder {0} is not supported"),
    ("Hello {}", "positional placeholder {} is not supported"),
    ("Hello {caller", "expected '}' before end of string (write {{ or }} for a literal brace)"),
    ("Hello }", "Single '}' encountered in format string"),
]


@pytest.mark.parametrize(("template", "expected"), BAD_TEMPLATES)
@pytest.mark.parametrize("key", ["instructions", "greeting"])
def test_bad_placeholders_are_load_errors(key: str, template: str, expected: str) -> None:
    message = error_of(f'[[profiles]]\nname = "p"\n{key} = "{template}"\n')
    assert f"profiles[p].{key} = {template!r}: {expected}" in message


def test_variables_and_literal_braces_are_accepted_placeholders() -> None:
    profile = one(
        'instructions = "At {hotel}: reply as {{\\"ok\\": true}} for {caller}."\n'
        'variables = { hotel = "R" }\n'
    )
    assert profile.instructions == 'At {hotel}: reply as {{"ok": true}} for {caller}.'


def test_unknown_placeholder_lists_the_profile_variables() -> None:
    message = error_of(
        '[[profiles]]\nname = "p"\ninstructions = "{hotle}"\nvariables = { hotel = "R" }\n'
    )
    assert message.endswith("{call_id}, {profile}, {hotel}")


def test_inherited_templates_are_checked_against_the_profile_variables() -> None:
    defaults = ProfileDefaults(instructions="You work at {hotel}.", greeting="Hi from {hotel}")
    (profile,) = parse(
        '[[profiles]]\nname = "r"\ndefault = true\nvariables = { hotel = "R" }\n',
        defaults=defaults,
    )
    assert profile.instructions == "You work at {hotel}."
    message = error_of('[[profiles]]\nname = "x"\ndefault = true\n', defaults=defaults)
    assert (
        "profiles[x].instructions (inherited from agent.instructions) = 'You work at {hotel}.': "
        "unknown placeholder {hotel}" in message
    )


def test_agent_templates_are_checked_when_the_agent_profile_answers() -> None:
    defaults = ProfileDefaults(instructions="Fine.", greeting="Hello {hotel}")
    assert "agent.toml: agent.greeting = 'Hello {hotel}': unknown placeholder {hotel}" in error_of(
        "", defaults=defaults
    )
    # A profile that inherits nothing and is the default takes the [agent] profile's place.
    text = '[[profiles]]\nname = "d"\ndefault = true\ngreeting = "Hi"\n'
    assert parse(text, defaults=defaults)[0].greeting == "Hi"


@pytest.mark.parametrize(
    ("defaults", "expected"),
    [
        (
            ProfileDefaults(instructions="x", dtmf_inter_digit_s=0.0),
            "agent.toml: agent.dtmf_inter_digit_s = 0.0: expected a number from 0.2 to 30",
        ),
        (
            ProfileDefaults(instructions="x", dtmf_max_digits=100),
            "agent.toml: agent.dtmf_max_digits = 100: expected a whole number from 1 to 64",
        ),
        (
            ProfileDefaults(instructions="x", dtmf_terminator="##"),
            "agent.toml: agent.dtmf_terminator = '##': expected one of '#', '*', ''",
        ),
        (
            ProfileDefaults(instructions="x", dtmf_message="no digits"),
            "agent.toml: agent.dtmf_message = 'no digits': expected text containing {digits}",
        ),
    ],
)
def test_agent_dtmf_defaults_are_checked(defaults: ProfileDefaults, expected: str) -> None:
    assert expected in error_of("", defaults=defaults)


def test_long_values_are_shortened_in_messages() -> None:
    message = error_of('[[profiles]]\nname = "p"\nlanguage = "' + "x" * 500 + '"\n')
    assert "..." in message and len(message) < 250


def test_known_tools_may_be_empty() -> None:
    with pytest.raises(ConfigError, match=re.escape("known tools: none are defined")):
        parse_profile_tables(
            [{"name": "p", "tools": ["end_call"]}],
            defaults=DEFAULTS,
            known_tools=(),
            base_dir=Path("."),
            origin=ORIGIN,
        )
