"""Checking the model's tool arguments against the tool's JSON Schema before anything runs.

Why check at all: the model is told each tool's parameters, but nothing forces it to
follow them. A webhook that receives a misspelt field or a string where it expects a
number may book the wrong room; a clear error lets the model correct itself on the next
turn instead. Two texts come out of a failure: one for the model (it may quote the
offending value, the model wrote it) and a value-free summary for logs, because the
arguments often carry a caller's name or phone number.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

NOT_JSON = "the arguments are not valid JSON"
MISMATCH = "the arguments do not match the tool's parameters"
_MAX_DETAIL = 160


class ArgumentsError(ValueError):
    """The arguments were refused; `str(self)` is for the model, `summary` for logs."""

    def __init__(self, message: str, *, summary: str) -> None:
        super().__init__(message)
        self.summary = summary


def parse_arguments(text: str) -> Any:
    """JSON text from the model → a value; empty text means no arguments (`{}`)."""
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArgumentsError(
            f"{NOT_JSON}: {exc.msg} at line {exc.lineno} column {exc.colno}", summary=NOT_JSON
        ) from None


class ArgumentValidator:
    """A compiled Draft 2020-12 validator for one tool's parameters.

    `format` stays an annotation, as the 2020-12 standard has it: which formats would be
    enforced otherwise depends on optional packages, and a tool must behave the same on
    every machine.
    """

    def __init__(self, parameters: Mapping[str, Any]) -> None:
        self._validator = Draft202012Validator(dict(parameters))

    def check(self, arguments: Any) -> dict[str, Any]:
        """The arguments as a dict, or ArgumentsError naming the most relevant mismatch."""
        error = best_match(self._validator.iter_errors(arguments))
        if error is not None:
            path = error.json_path
            detail = " ".join(error.message.split())
            if len(detail) > _MAX_DETAIL:
                detail = detail[: _MAX_DETAIL - 3] + "..."
            where = "" if path == "$" else f"{path}: "
            raise ArgumentsError(
                f"{MISMATCH}: {where}{detail}",
                summary=f"{MISMATCH} ({error.validator} at {path})",
            )
        if not isinstance(arguments, dict):
            raise ArgumentsError(
                f"{MISMATCH}: expected a JSON object", summary=f"{MISMATCH} (not an object)"
            )
        return arguments


def validator_for(parameters: Mapping[str, Any]) -> ArgumentValidator:
    """A validator shared by every tool with the same schema (per-call registries included)."""
    return _compiled(json.dumps(parameters, sort_keys=True, separators=(",", ":")))


@functools.lru_cache(maxsize=256)
def _compiled(canonical: str) -> ArgumentValidator:
    parameters: dict[str, Any] = json.loads(canonical)
    return ArgumentValidator(parameters)
