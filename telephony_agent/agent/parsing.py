"""Reading `[[profiles]]` tables into resolved `Profile` records.

Why everything is checked here, once: a profile is only used when its number rings,
possibly weeks after a deploy. Unknown keys, bad regexes, missing greeting files,
unknown tools and misspelt placeholders are therefore all reported when the settings
file loads, each as one line naming `profiles[NAME].key`, the bad value and what was
expected. Templates inherited from `[agent]` are checked too, against the variables of
the profile that inherits them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from difflib import get_close_matches
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from telephony_agent.agent.numbers import normalise_number
from telephony_agent.agent.outbound import OUTBOUND_KEYS, parse_outbound
from telephony_agent.agent.profiles import (
    BUILTIN_PLACEHOLDERS,
    DEFAULT_PROFILE_NAME,
    DTMF_PLACEHOLDER,
    DTMF_TERMINATORS,
    PROVIDER_NAMES,
    Profile,
    ProfileDefaults,
    ProviderName,
)
from telephony_agent.agent.templates import fields_of, template_problem
from telephony_agent.agent.tool_wait import TOOL_WAIT_KEYS, parse_tool_wait
from telephony_agent.agent.transfer import TRANSFER_KEYS, parse_transfer
from telephony_agent.agent.values import KeyChecker, did_you_mean, show
from telephony_agent.errors import ConfigError

KNOWN_KEYS: tuple[str, ...] = (
    "name",
    "numbers",
    "match",
    "default",
    "instructions",
    "greeting",
    "greeting_audio",
    "voice",
    "provider",
    "model",
    "language",
    "max_duration_s",
    "tools",
    "variables",
    "timezone",
    "dtmf_inter_digit_s",
    "dtmf_max_digits",
    "dtmf_terminator",
    "dtmf_message",
    "record",
    "keep_records",
    *TOOL_WAIT_KEYS,
    *OUTBOUND_KEYS,
    "transfer_targets",
    *TRANSFER_KEYS,
)

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LANGUAGE_EXPECTED = "a language tag such as 'en' or 'ru-RU'"
_DURATION = (1.0, 86400.0)
_INTER_DIGIT = (0.2, 30.0)
_MAX_DIGITS = (1, 64)


def parse_profile_tables(
    raw: object,
    *,
    defaults: ProfileDefaults,
    known_tools: Collection[str],
    base_dir: Path,
    origin: str,
) -> tuple[Profile, ...]:
    """The `profiles` value of a settings file (None when absent) as profiles, in file order.

    `defaults` are the `[agent]` values inherited by keys a table leaves out,
    `known_tools` the names `tools` may list, `base_dir` the folder relative
    `greeting_audio` paths start from, and `origin` (the file name) prefixes every error.
    Also checks the `[agent]` templates and DTMF values, which the profile built from
    `[agent]` uses when no table says `default = true`.
    """
    _check_defaults(defaults, origin, templates=False)
    if raw is None:
        tables: list[object] = []
    elif isinstance(raw, list):
        tables = raw
    else:
        raise ConfigError(
            f"{origin}: profiles = {show(raw)}: expected an array of tables, "
            "written as [[profiles]] sections"
        )
    profiles: list[Profile] = []
    first_index: dict[str, int] = {}
    for index, table in enumerate(tables):
        profile = _parse_table(
            table,
            index=index,
            defaults=defaults,
            known_tools=known_tools,
            base_dir=base_dir,
            origin=origin,
        )
        if profile.name in first_index:
            raise ConfigError(
                f"{origin}: profiles[{index}].name = {profile.name!r}: expected a unique name, "
                f"profiles[{first_index[profile.name]}] already has it"
            )
        first_index[profile.name] = index
        profiles.append(profile)
    marked = [p.name for p in profiles if p.is_default]
    if len(marked) > 1:
        raise ConfigError(
            f"{origin}: profiles[{marked[0]}].default and profiles[{marked[1]}].default are "
            "both true: expected at most one default profile"
        )
    if not marked:
        _check_defaults(defaults, origin, templates=True)
    return tuple(profiles)


def _check_defaults(defaults: ProfileDefaults, origin: str, *, templates: bool) -> None:
    """The `[agent]` values: DTMF always, templates when the `[agent]` profile is in use."""
    check = KeyChecker(f"{origin}: agent.")
    check.number("dtmf_inter_digit_s", defaults.dtmf_inter_digit_s, *_INTER_DIGIT)
    check.integer("dtmf_max_digits", defaults.dtmf_max_digits, *_MAX_DIGITS)
    check.choice("dtmf_terminator", defaults.dtmf_terminator, DTMF_TERMINATORS)
    _check_dtmf_message(check, "dtmf_message", defaults.dtmf_message)
    if templates:
        _check_template(check, "instructions", defaults.instructions, BUILTIN_PLACEHOLDERS)
        if defaults.greeting:
            _check_template(check, "greeting", defaults.greeting, BUILTIN_PLACEHOLDERS)


def _check_template(check: KeyChecker, key: str, value: str, known: Collection[str]) -> None:
    problem = template_problem(value, known)
    if problem is not None:
        check.fail(key, value, problem)


def _check_dtmf_message(check: KeyChecker, key: str, value: object) -> str:
    text = check.text(key, value)
    _check_template(check, key, text, (DTMF_PLACEHOLDER,))
    if DTMF_PLACEHOLDER not in fields_of(text):
        check.fail(key, value, "expected text containing {digits}")
    return text


def _table_name(table: Mapping[str, Any], index: int, origin: str) -> str:
    """The table's checked name, then a check that every key in it is known."""
    if "name" not in table:
        raise ConfigError(
            f"{origin}: profiles[{index}]: missing required key name "
            "(expected a name such as 'booking')"
        )
    check = KeyChecker(f"{origin}: profiles[{index}].")
    name = check.pattern("name", table["name"], _NAME, "1 to 64 letters, digits, '_', '.' or '-'")
    if name == DEFAULT_PROFILE_NAME and table.get("default") is not True:
        check.fail(
            "name",
            name,
            f"{name!r} is kept for the default profile: add default = true or choose another name",
        )
    for key in table:
        if key not in KNOWN_KEYS:
            close = get_close_matches(key, KNOWN_KEYS, n=1)
            hint = f" (did you mean profiles[{name}].{close[0]}?)" if close else ""
            raise ConfigError(f"{origin}: unknown key profiles[{name}].{key}{hint}")
    return name


def _parse_table(
    table: object,
    *,
    index: int,
    defaults: ProfileDefaults,
    known_tools: Collection[str],
    base_dir: Path,
    origin: str,
) -> Profile:
    if not isinstance(table, Mapping):
        raise ConfigError(
            f"{origin}: profiles[{index}] = {show(table)}: expected a table, written as a "
            "[[profiles]] section"
        )
    table = cast("Mapping[str, Any]", table)
    name = _table_name(table, index, origin)
    check = KeyChecker(f"{origin}: profiles[{name}].")
    variables = _variables(check, table.get("variables"))
    placeholders = BUILTIN_PLACEHOLDERS + tuple(variables)
    has = table.__contains__
    return Profile(
        name=name,
        is_default=check.flag("default", table["default"]) if has("default") else False,
        numbers=_numbers(check, table.get("numbers")),
        match=check.regex("match", table["match"]) if has("match") else None,
        instructions=_template(
            check, table, "instructions", defaults.instructions, placeholders, allow_empty=False
        ),
        greeting=_template(check, table, "greeting", defaults.greeting, placeholders) or None,
        greeting_audio=(
            check.wav_file("greeting_audio", table["greeting_audio"], base_dir)
            if has("greeting_audio")
            else None
        ),
        voice=check.text("voice", table["voice"]) if has("voice") else defaults.voice,
        provider=(
            cast("ProviderName", check.choice("provider", table["provider"], PROVIDER_NAMES))
            if has("provider")
            else None
        ),
        model=check.text("model", table["model"]) if has("model") else None,
        language=(
            check.pattern("language", table["language"], _LANGUAGE, _LANGUAGE_EXPECTED)
            if has("language")
            else None
        ),
        max_duration_s=(
            check.number("max_duration_s", table["max_duration_s"], *_DURATION)
            if has("max_duration_s")
            else defaults.max_duration_s
        ),
        tools=_tools(check, table.get("tools"), known_tools),
        variables=MappingProxyType(variables),
        timezone=check.timezone("timezone", table["timezone"]) if has("timezone") else None,
        record=check.flag("record", table["record"]) if has("record") else None,
        transfer_targets=MappingProxyType(
            _transfer_targets(check, table["transfer_targets"]) if has("transfer_targets") else {}
        ),
        keep_records=(
            check.flag("keep_records", table["keep_records"]) if has("keep_records") else None
        ),
        dtmf_inter_digit_s=check.number(
            "dtmf_inter_digit_s",
            table.get("dtmf_inter_digit_s", defaults.dtmf_inter_digit_s),
            *_INTER_DIGIT,
        ),
        dtmf_max_digits=check.integer(
            "dtmf_max_digits", table.get("dtmf_max_digits", defaults.dtmf_max_digits), *_MAX_DIGITS
        ),
        dtmf_terminator=check.choice(
            "dtmf_terminator",
            table.get("dtmf_terminator", defaults.dtmf_terminator),
            DTMF_TERMINATORS,
        ),
        dtmf_message=_check_dtmf_message(
            check, "dtmf_message", table.get("dtmf_message", defaults.dtmf_message)
        ),
        tool_wait=parse_tool_wait(check, table, defaults.tool_wait, base_dir),
        outbound=parse_outbound(check, table),
        transfer=parse_transfer(check, table),
    )


def _template(
    check: KeyChecker,
    table: Mapping[str, Any],
    key: str,
    inherited: str | None,
    placeholders: Collection[str],
    *,
    allow_empty: bool = True,
) -> str:
    """The table's own template (an empty greeting turns the greeting off) or the `[agent]`
    one; either is checked against this profile's placeholders, the inherited one under a
    name that says where it came from."""
    if key in table:
        value = check.text(key, table[key], allow_empty=allow_empty)
        _check_template(check, key, value, placeholders)
        return value
    if not inherited:
        return ""
    _check_template(check, f"{key} (inherited from agent.{key})", inherited, placeholders)
    return inherited


def _numbers(check: KeyChecker, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    numbers = check.string_list("numbers", value, '["booking", "+74951234567"]')
    seen: dict[str, int] = {}
    for index, number in enumerate(numbers):
        plain = normalise_number(number)
        if not plain:
            check.fail(
                f"numbers[{index}]", number, "expected a number or a name, not only separators"
            )
        if plain in seen:
            check.fail(
                f"numbers[{index}]",
                number,
                f"expected each number once, numbers[{seen[plain]}] is the same number",
            )
        seen[plain] = index
    return numbers


def _tools(
    check: KeyChecker, value: object, known_tools: Collection[str]
) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = check.string_list("tools", value, '["check_availability", "end_call"]')
    known = sorted(known_tools)
    for index, name in enumerate(names):
        if name not in known_tools:
            listed = ", ".join(known) if known else "none are defined"
            check.fail(
                f"tools[{index}]",
                name,
                f"unknown tool{did_you_mean(name, known)}; known tools: {listed}",
            )
        if name in names[:index]:
            check.fail(f"tools[{index}]", name, "expected each tool once")
    return names


_TARGET_NAME = re.compile(r"[^\x00-\x1f]{1,64}")
_TARGET = re.compile(r"^(sips?:[^\s<>\"]+|tel:\+?[0-9*#().\- ]{1,32}|\+?[0-9*#]{1,32})$")


def _transfer_targets(check: KeyChecker, value: object) -> dict[str, str]:
    """name → SIP URI or number: the only places `transfer_call` may send a caller."""
    if not isinstance(value, dict) or not value:
        check.fail(
            "transfer_targets",
            value,
            'expected a table of names and targets, e.g. { sales = "sip:sales@pbx.local" }',
        )
    targets: dict[str, str] = {}
    for name, target in value.items():
        key = f"transfer_targets.{name}"
        if not _TARGET_NAME.fullmatch(str(name)):
            check.fail(key, name, "expected a name of 1-64 printable characters")
        if not isinstance(target, str) or not _TARGET.match(target.strip()):
            check.fail(key, target, "expected a sip: or tel: URI or a phone number")
        targets[str(name)] = target.strip()
    return targets


def _variables(check: KeyChecker, value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        check.fail("variables", value, 'expected a table of strings, e.g. {hotel = "Riverside"}')
    result: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or _VARIABLE.fullmatch(name) is None:
            check.fail(
                "variables",
                name,
                "expected variable names of letters, digits and '_', not starting with a digit",
            )
        if name in BUILTIN_PLACEHOLDERS:
            check.fail(
                f"variables.{name}",
                text,
                f"{{{name}}} is a built-in placeholder; expected another variable name",
            )
        result[name] = check.text(f"variables.{name}", text, allow_empty=True)
    return result
