"""Checks for single `[[profiles]]` values, each failing with one line that names the key.

Why a separate module: the profile parser decides *which* keys a table may hold and how
they inherit from `[agent]`; these functions only answer "is this one value right",
so each rule reads on its own and the parser stays about structure.
"""

from __future__ import annotations

import re
import wave
from collections.abc import Collection
from difflib import get_close_matches
from pathlib import Path
from typing import NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from telephony_agent.errors import ConfigError

_MAX_SHOWN = 80


def show(value: object) -> str:
    """`repr(value)` cut to a readable length, so one bad value keeps the error on one line."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def did_you_mean(word: str, choices: Collection[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    hint = get_close_matches(word, list(choices), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


class KeyChecker:
    """Validates the values of one table, prefixing every error with where the value lives.

    `prefix` is what goes before the key, e.g. "agent.toml: profiles[booking]."; a
    checker for `[agent]` values uses "agent.toml: agent.".
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def fail(self, key: str, value: object, expected: str) -> NoReturn:
        raise ConfigError(f"{self.prefix}{key} = {show(value)}: {expected}")

    def text(self, key: str, value: object, *, allow_empty: bool = False) -> str:
        if not isinstance(value, str):
            self.fail(key, value, "expected a string")
        if not allow_empty and not value.strip():
            self.fail(key, value, "expected a non-empty string")
        return value

    def flag(self, key: str, value: object) -> bool:
        if not isinstance(value, bool):
            self.fail(key, value, "expected true or false")
        return value

    def number(self, key: str, value: object, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, value, f"expected a number from {low:g} to {high:g}")
        if not low <= value <= high:
            self.fail(key, value, f"expected a number from {low:g} to {high:g}")
        return float(value)

    def integer(self, key: str, value: object, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(key, value, f"expected a whole number from {low} to {high}")
        return value

    def choice(self, key: str, value: object, choices: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in choices:
            hint = did_you_mean(value, choices) if isinstance(value, str) else ""
            listed = ", ".join(repr(c) for c in choices)
            self.fail(key, value, f"expected one of {listed}{hint}")
        return value

    def pattern(self, key: str, value: object, regex: re.Pattern[str], expected: str) -> str:
        if not isinstance(value, str) or regex.fullmatch(value) is None:
            self.fail(key, value, f"expected {expected}")
        return value

    def string_list(self, key: str, value: object, example: str) -> tuple[str, ...]:
        """A TOML array of non-empty strings; a bare string or a number is a likely slip."""
        if not isinstance(value, list):
            self.fail(key, value, f"expected a list of strings, e.g. {example}")
        result: list[str] = []
        for index, item in enumerate(value):
            if isinstance(item, int | float) and not isinstance(item, bool):
                self.fail(
                    f"{key}[{index}]",
                    item,
                    "expected a string in quotes (a number loses a leading + or 0)",
                )
            result.append(self.text(f"{key}[{index}]", item))
        return tuple(result)

    def regex(self, key: str, value: object) -> re.Pattern[str]:
        text = self.text(key, value)
        try:
            return re.compile(text)
        except re.error as exc:
            self.fail(key, value, f"expected a regular expression ({exc})")

    def timezone(self, key: str, value: object) -> ZoneInfo:
        text = self.text(key, value)
        try:
            return ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            hint = did_you_mean(text, available_timezones())
            self.fail(key, value, f"expected an IANA time zone such as 'Europe/Moscow'{hint}")

    def wav_file(self, key: str, value: object, base_dir: Path) -> Path:
        """An existing mono or stereo PCM16 WAV; relative paths start at `base_dir`."""
        text = self.text(key, value)
        path = Path(text)
        if not path.is_absolute():
            path = base_dir / path
        path = path.resolve()
        expected = "expected a mono or stereo 16-bit PCM WAV file"
        if not path.is_file():
            self.fail(key, value, f"no such file {path}; {expected}")
        try:
            with wave.open(str(path), "rb") as wav:
                channels = wav.getnchannels()
                width = wav.getsampwidth()
                frames = wav.getnframes()
        except (wave.Error, EOFError, RuntimeError, ValueError) as exc:
            detail = str(exc) or "truncated or malformed"
            self.fail(key, value, f"{path} is not a readable WAV file ({detail}); {expected}")
        except OSError as exc:
            self.fail(key, value, f"cannot read {path} ({exc.strerror}); {expected}")
        if channels not in (1, 2):
            self.fail(key, value, f"{path} has {channels} channels; {expected}")
        if width != 2:
            self.fail(key, value, f"{path} has {8 * width}-bit samples; {expected}")
        if frames == 0:
            self.fail(key, value, f"{path} holds no audio; {expected}")
        return path
