"""One settings value checked against its declared type, with a one-line error.

Why apart from the schema: the schema (`config.py`) says which keys exist, their types,
defaults and ranges; this module only knows how a TOML value or an environment string
becomes a value of a type (strings, numbers, booleans, literals, unions, lists of names,
tables), and how to say in one line what was wrong and what was expected.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from difflib import get_close_matches
from typing import Any, Literal

from telephony_agent.errors import ConfigError

__all__ = ["coerce", "describe"]


def describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(describe(a) for a in inner)
    if origin is tuple:
        return "a list of names"
    if origin is Mapping:
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, str(tp)
    )


def coerce(
    key: str,
    value: Any,
    tp: Any,
    *,
    from_env: bool,
    ranges: Mapping[str, tuple[float, float]],
    in_union: bool = False,
) -> Any:
    """Check (and for env strings, convert) one value against its declared type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (from_env and value == ""):
            return None
        errors = []
        for candidate in inner:
            try:
                return coerce(
                    key, value, candidate, from_env=from_env, ranges=ranges, in_union=True
                )
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:  # one possible type: its own message says more (e.g. a range)
            raise errors[0]
        raise ConfigError(f"{key} = {value!r}: expected {describe(tp)}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        hint = get_close_matches(str(value), [str(a) for a in typing.get_args(tp)], n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"{key} = {value!r}: expected {describe(tp)}{extra}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if (
            from_env
            and isinstance(value, str)
            and value.lower() in ("1", "true", "yes", "0", "false", "no")
        ):
            return value.lower() in ("1", "true", "yes")
        raise ConfigError(f"{key} = {value!r}: expected true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            result: Any = value
        elif from_env and isinstance(value, str):
            try:
                result = int(value)
            except ValueError:
                raise ConfigError(f"{key} = {value!r}: expected an integer") from None
        else:
            raise ConfigError(f"{key} = {value!r}: expected an integer")
        return _check_range(key, result, ranges)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _check_range(key, float(value), ranges)
        if from_env and isinstance(value, str):
            try:
                return _check_range(key, float(value), ranges)
            except ValueError:
                raise ConfigError(f"{key} = {value!r}: expected a number") from None
        raise ConfigError(f"{key} = {value!r}: expected a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} = {value!r}: expected a string")
    if origin is tuple:
        if in_union:
            return _coerce_strings(key, value, from_env=from_env)
        return _coerce_string_list(key, value, from_env=from_env)
    if origin is Mapping:
        return _coerce_table(key, value, from_env=from_env)
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # pragma: no cover - schema bug


def _coerce_string_list(key: str, value: Any, *, from_env: bool) -> tuple[str, ...]:
    """A list of strings, possibly empty (comma separated in the environment)."""
    if from_env and isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{key} = {value!r}: expected a list of strings")


def _coerce_strings(key: str, value: Any, *, from_env: bool) -> tuple[str, ...]:
    """A non-empty list of non-empty strings (comma separated in the environment, where a
    value without a comma is left to the next type of a union, usually one string)."""
    if from_env and isinstance(value, str):
        if "," not in value:
            raise ConfigError(f"{key} = {value!r}: expected names separated by commas")
        value = [part.strip() for part in value.split(",")]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v.strip() for v in value)
    ):
        raise ConfigError(f"{key} = {value!r}: expected a non-empty list of names")
    return tuple(v.strip() for v in value)


def _coerce_table(key: str, value: Any, *, from_env: bool) -> dict[str, Any]:
    """A table (a JSON object in the environment)."""
    if from_env and isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            raise ConfigError(f"{key} = {value!r}: expected a JSON object") from None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} = {value!r}: expected a table")
    return dict(value)


def _check_range(key: str, value: float, ranges: Mapping[str, tuple[float, float]]) -> Any:
    bounds = ranges.get(key)
    if bounds and not bounds[0] <= value <= bounds[1]:
        raise ConfigError(f"{key} = {value!r}: expected a value from {bounds[0]} to {bounds[1]}")
    return value
