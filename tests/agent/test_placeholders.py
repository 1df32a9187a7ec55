"""Per-call rendering: built-in placeholders, variables, literal braces, time zones, DTMF text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from telephony_agent.agent import (
    BUILTIN_PLACEHOLDERS,
    CallFacts,
    Profile,
    format_dtmf_message,
    placeholder_values,
    render_greeting,
    render_instructions,
)
from telephony_agent.agent.templates import fields_of, substitute, template_problem

from .support import one

# Friday 2024-03-01 21:30 UTC = Saturday 2024-03-02 00:30 in Moscow (UTC+3).
NOW = datetime(2024, 3, 1, 21, 30, 5, tzinfo=UTC)
FACTS = CallFacts(caller="+15551234567", dialled="booking", call_id="c-42", now=NOW)

ALL = "{caller}|{dialled}|{date}|{time}|{weekday}|{call_id}|{profile}|{hotel}|{{literal}}|{city}"


def test_all_builtins_and_variables_render() -> None:
    profile = one(
        f'instructions = "{ALL}"\ntimezone = "UTC"\n'
        'variables = { hotel = "Riverside", city = "Moscow" }\n'
    )
    assert render_instructions(profile, FACTS) == (
        "+15551234567|booking|2024-03-01|21:30|Friday|c-42|p|Riverside|{literal}|Moscow"
    )


def test_every_builtin_placeholder_has_a_value() -> None:
    profile = one('timezone = "UTC"\n')
    assert set(placeholder_values(profile, FACTS)) == set(BUILTIN_PLACEHOLDERS)


def test_timezone_changes_date_time_and_weekday() -> None:
    profile = one('instructions = "{date} {time} {weekday}"\ntimezone = "Europe/Moscow"\n')
    assert render_instructions(profile, FACTS) == "2024-03-02 00:30 Saturday"
    tokyo = one('instructions = "{date} {time} {weekday}"\ntimezone = "Asia/Tokyo"\n')
    assert render_instructions(tokyo, FACTS) == "2024-03-02 06:30 Saturday"


def test_without_timezone_the_system_local_time_is_used() -> None:
    profile = one('instructions = "{date} {time} {weekday}"\n')
    local = NOW.astimezone()
    expected = f"{local:%Y-%m-%d} {local:%H:%M} {local.strftime('%A')}"
    assert render_instructions(profile, FACTS) == expected


def test_a_naive_now_is_taken_as_local_time() -> None:
    profile = one('instructions = "{time}"\n')
    naive = datetime(2024, 3, 1, 7, 5)
    facts = CallFacts(caller="", dialled="", call_id="", now=naive)
    assert render_instructions(profile, facts) == "07:05"


def test_offset_aware_now_is_converted() -> None:
    profile = one('instructions = "{time}"\ntimezone = "UTC"\n')
    plus_five = datetime(2024, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=5)))
    facts = CallFacts(caller="", dialled="", call_id="", now=plus_five)
    assert render_instructions(profile, facts) == "07:00"


@pytest.mark.parametrize(
    "caller", ["{date}", "}{", "{", "{{caller}}", "{0}", "{caller.__class__}", "%s"]
)
def test_values_are_inserted_literally(caller: str) -> None:
    profile = one('instructions = "Caller: {caller} on {dialled}."\n')
    facts = CallFacts(caller=caller, dialled="{profile}", call_id="c", now=NOW)
    assert render_instructions(profile, facts) == f"Caller: {caller} on {{profile}}."


def test_variable_values_with_braces_are_literal() -> None:
    profile = one('instructions = "{hotel}"\nvariables = { hotel = "{caller} & {{x}}" }\n')
    assert render_instructions(profile, FACTS) == "{caller} & {{x}}"


def test_greeting_renders_and_none_when_absent() -> None:
    profile = one('greeting = "Say: welcome to {hotel}, {caller}."\nvariables = { hotel = "R" }\n')
    assert render_greeting(profile, FACTS) == "Say: welcome to R, +15551234567."
    assert render_greeting(one('greeting = ""\n'), FACTS) is None


def test_rendering_never_raises_on_an_unchecked_template() -> None:
    """A Profile built in code skips the load-time check; rendering still returns text."""
    profile = Profile(name="x", instructions="{caller} {nope} {caller!r} {time:%H} {", greeting="}")
    assert render_instructions(profile, FACTS) == "{caller} {nope} {caller!r} {time:%H} {"
    assert render_greeting(profile, FACTS) == "}"
    unchecked = Profile(name="x", instructions="{caller} {nope} {caller!r} {time:>9}")
    assert render_instructions(unchecked, FACTS) == "+15551234567 {nope} {caller!r} {time:>9}"


def test_rendering_survives_a_clock_at_the_edge_of_the_range() -> None:
    profile = one('instructions = "{date}"\ntimezone = "Asia/Tokyo"\n')
    edge = CallFacts(caller="", dialled="", call_id="", now=datetime.max.replace(tzinfo=UTC))
    assert render_instructions(profile, edge) == "9999-12-31"


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        ("4512#", "The caller typed: 4 5 1 2 #"),
        ("7", "The caller typed: 7"),
        ("*0A", "The caller typed: * 0 A"),
        ("", "The caller typed: "),
        ("1 2", "The caller typed: 1 2"),
    ],
)
def test_dtmf_message_spaces_the_digits(digits: str, expected: str) -> None:
    assert format_dtmf_message(one(""), digits) == expected


def test_custom_dtmf_message_with_literal_braces() -> None:
    profile = one('dtmf_message = "{{dtmf}} {digits} / {digits}"\n')
    assert format_dtmf_message(profile, "12") == "{dtmf} 1 2 / 1 2"


def test_template_helpers() -> None:
    assert template_problem("plain {{text}}", ()) is None
    assert fields_of("{a} {{b}} {a}") == ("a", "a")
    assert fields_of("{") == ()
    assert substitute("{a}{b}", {"a": "{b}"}) == "{b}{b}"
