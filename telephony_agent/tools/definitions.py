"""`[[tools]]` tables of a settings file, parsed into typed, validated tool definitions.

Why a separate parser instead of the generic settings schema: a tool is a list entry
whose allowed keys depend on its kind (webhook or Python), its parameters are a JSON
Schema that must itself be checked, and every message must name the tool by name
(`tools[lookup].timeout_s`) so an operator with ten tools finds the bad line at once.
Only `errors` and `realtime.session_config` are imported so the settings module can
use this without pulling in the call machinery.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from telephony_agent.errors import ConfigError
from telephony_agent.realtime.session_config import ToolSpec

#: Names the call itself provides; a business tool may not shadow them.
BUILTIN_TOOL_NAMES = ("end_call", "transfer_call", "send_dtmf")

DEFAULT_WEBHOOK_TIMEOUT_S = 5.0
DEFAULT_PYTHON_TIMEOUT_S = 10.0
DEFAULT_RETRIES = 2
DEFAULT_MAX_OUTPUT_CHARS = 4000
TIMEOUT_RANGE = (0.1, 120.0)
RETRIES_RANGE = (0, 10)
MAX_OUTPUT_RANGE = (100, 100_000)

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_PYTHON_TARGET = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}(\.{_IDENTIFIER})*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: Headers the webhook client sets itself; a static header must not replace them.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "x-telephony-agent-timestamp",
        "x-telephony-agent-signature",
    }
)

_COMMON_KEYS = ("name", "description", "parameters", "parameters_file", "webhook", "python")
_WEBHOOK_KEYS = ("secret_env", "timeout_s", "retries", "max_output_chars", "headers")
_PYTHON_KEYS = ("timeout_s",)
_ALL_KEYS = frozenset(_COMMON_KEYS + _WEBHOOK_KEYS + _PYTHON_KEYS)

#: Turns a key of the current table into its message prefix: `agent.toml: tools[lookup].retries`.
_Where = Callable[[str], str]


def empty_parameters() -> dict[str, Any]:
    """The schema of a tool that takes no arguments."""
    return {"type": "object", "properties": {}}


@dataclass(frozen=True, kw_only=True)
class ToolDefinition:
    """One `[[tools]]` table, validated; `spec` is what the model is told about the tool."""

    name: str
    description: str
    spec: ToolSpec
    #: The settings file the table came from, so load-time errors can name it too.
    origin: str
    webhook: str | None = None
    python: str | None = None
    timeout_s: float = DEFAULT_WEBHOOK_TIMEOUT_S
    retries: int = 0
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS
    secret_env: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    parameters_file: Path | None = None

    @property
    def kind(self) -> Literal["webhook", "python"]:
        return "webhook" if self.webhook is not None else "python"

    def key(self, key: str) -> str:
        """How messages name one of this tool's keys, e.g. `tools[lookup].timeout_s`."""
        return f"tools[{self.name}].{key}"


def parse_tool_tables(raw: object, *, base_dir: Path, origin: str) -> tuple[ToolDefinition, ...]:
    """Validate the `tools` value of a parsed TOML file; raises ConfigError on the first fault."""
    if not isinstance(raw, list):
        raise ConfigError(f"{origin}: tools = {_show(raw)}: expected a list of [[tools]] tables")
    definitions: list[ToolDefinition] = []
    first_index: dict[str, int] = {}
    for index, table in enumerate(raw):
        if not isinstance(table, Mapping):
            raise ConfigError(f"{origin}: tools[{index}] = {_show(table)}: expected a table")
        definition = _parse_table(table, index=index, base_dir=base_dir, origin=origin)
        if definition.name in first_index:
            raise ConfigError(
                f"{origin}: tools[{index}].name = {definition.name!r}: expected a unique name "
                f"(tools[{first_index[definition.name]}] already uses it)"
            )
        first_index[definition.name] = index
        definitions.append(definition)
    return tuple(definitions)


def _parse_table(
    table: Mapping[str, Any], *, index: int, base_dir: Path, origin: str
) -> ToolDefinition:
    name = _parse_name(table, index=index, origin=origin)

    def where(key: str) -> str:
        return f"{origin}: tools[{name}].{key}"

    for key in table:
        if key not in _ALL_KEYS:
            hint = get_close_matches(str(key), sorted(_ALL_KEYS), n=1)
            extra = f" (did you mean tools[{name}].{hint[0]}?)" if hint else ""
            raise ConfigError(f"{origin}: unknown key tools[{name}].{key}{extra}")
    kind = _parse_kind(table, where)
    allowed = _COMMON_KEYS + (_WEBHOOK_KEYS if kind == "webhook" else _PYTHON_KEYS)
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where(key)}: only webhook tools take this key, this is python")

    description = table.get("description")
    if not isinstance(description, str) or not description.strip():
        shown = "is missing" if description is None else f"= {_show(description)}"
        raise ConfigError(f"{where('description')} {shown}: expected a non-empty string")

    parameters, parameters_file = _parse_parameters(table, where, base_dir)
    spec = ToolSpec(name=name, description=description.strip(), parameters=parameters)
    common: dict[str, Any] = {
        "name": name,
        "description": spec.description,
        "spec": spec,
        "origin": origin,
        "parameters_file": parameters_file,
    }
    if kind == "python":
        target = table["python"]
        if not isinstance(target, str) or not _PYTHON_TARGET.fullmatch(target):
            raise ConfigError(
                f"{where('python')} = {_show(target)}: expected 'package.module:function'"
            )
        timeout = _number(table, "timeout_s", DEFAULT_PYTHON_TIMEOUT_S, TIMEOUT_RANGE, where)
        return ToolDefinition(python=target, timeout_s=timeout, **common)
    return ToolDefinition(
        webhook=_parse_url(table["webhook"], where),
        timeout_s=_number(table, "timeout_s", DEFAULT_WEBHOOK_TIMEOUT_S, TIMEOUT_RANGE, where),
        retries=_integer(table, "retries", DEFAULT_RETRIES, RETRIES_RANGE, where),
        max_output_chars=_integer(
            table, "max_output_chars", DEFAULT_MAX_OUTPUT_CHARS, MAX_OUTPUT_RANGE, where
        ),
        secret_env=_parse_secret_env(table.get("secret_env"), where),
        headers=_parse_headers(table.get("headers"), where),
        **common,
    )


def _parse_name(table: Mapping[str, Any], *, index: int, origin: str) -> str:
    name = table.get("name")
    key = f"{origin}: tools[{index}].name"
    if name is None:
        raise ConfigError(f"{key} is missing: expected 1 to 64 letters, digits, '_' or '-'")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{key} = {_show(name)}: expected 1 to 64 letters, digits, '_' or '-'")
    if name in BUILTIN_TOOL_NAMES:
        raise ConfigError(
            f"{key} = {name!r}: expected a name other than the built-in "
            f"{', '.join(BUILTIN_TOOL_NAMES)}"
        )
    return name


def _parse_kind(table: Mapping[str, Any], where: _Where) -> Literal["webhook", "python"]:
    has_webhook, has_python = "webhook" in table, "python" in table
    if has_webhook and has_python:
        raise ConfigError(f"{where('python')}: expected either webhook or python, not both")
    if not has_webhook and not has_python:
        raise ConfigError(
            f'{where("webhook")} is missing: expected webhook = "https://…" or '
            'python = "package.module:function" (exactly one)'
        )
    return "webhook" if has_webhook else "python"


def _parse_url(value: object, where: _Where) -> str:
    expected = "expected an http:// or https:// URL with a host"
    if not isinstance(value, str):
        raise ConfigError(f"{where('webhook')} = {_show(value)}: {expected}")
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        raise ConfigError(f"{where('webhook')} = {_show(value)}: {expected}") from None
    if parts.username is not None or parts.password is not None:
        masked = value.replace(parts.netloc, "***@" + parts.netloc.rpartition("@")[2], 1)
        raise ConfigError(
            f"{where('webhook')} = {masked!r}: expected no user:password in the URL "
            "(use secret_env or headers)"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where('webhook')} = {_show(value)}: {expected}")
    return value


def _parse_secret_env(value: object, where: _Where) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise ConfigError(
            f"{where('secret_env')} = {_show(value)}: expected the name of an environment "
            "variable (letters, digits, '_')"
        )
    return value


def _parse_headers(value: object, where: _Where) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where('headers')} = {_show(value)}: expected a table of strings")
    headers: dict[str, str] = {}
    for name, text in value.items():
        key = where(f"headers.{name}")
        if not _HEADER_NAME.fullmatch(name):
            raise ConfigError(f"{key}: expected a header name (letters, digits, '-')")
        if name.lower() in RESERVED_HEADERS:
            raise ConfigError(f"{key}: this header is set by the agent itself")
        if not isinstance(text, str) or "\r" in text or "\n" in text:
            # The value is not echoed: a static header often carries a credential.
            raise ConfigError(f"{key}: expected a string on one line")
        headers[name] = text
    return headers


def _parse_parameters(
    table: Mapping[str, Any], where: _Where, base_dir: Path
) -> tuple[dict[str, Any], Path | None]:
    if "parameters" in table and "parameters_file" in table:
        raise ConfigError(f"{where('parameters_file')}: expected parameters or parameters_file")
    if "parameters" in table:
        key, schema, path = "parameters", table["parameters"], None
        if not isinstance(schema, Mapping):
            raise ConfigError(f"{where(key)} = {_show(schema)}: expected a JSON Schema table")
        try:
            schema = json.loads(json.dumps(schema))
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where(key)}: expected JSON values only (TOML dates and times are not JSON)"
            ) from None
    elif "parameters_file" in table:
        key, (schema, path) = "parameters_file", _read_schema_file(table, where, base_dir)
    else:
        return empty_parameters(), None
    _check_schema(schema, f"{where(key)}" + (f" ({path.name})" if path else ""))
    return schema, path


def _read_schema_file(
    table: Mapping[str, Any], where: _Where, base_dir: Path
) -> tuple[object, Path]:
    value = table["parameters_file"]
    key = where("parameters_file")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} = {_show(value)}: expected the path of a JSON file")
    path = Path(value)
    if not path.is_absolute():
        path = base_dir / path
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{key} = {value!r}: cannot read {path} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{key} = {value!r}: {path} is not UTF-8 text") from None
    try:
        return json.loads(text), path
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{key} = {value!r}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None


def _check_schema(schema: object, key: str) -> None:
    if not isinstance(schema, dict):
        raise ConfigError(f"{key}: expected a JSON object (a schema), got {_show(schema)}")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        at = "/".join(str(part) for part in exc.path)
        raise ConfigError(
            f"{key}: not a valid JSON Schema: {_short(exc.message)}" + (f" (at {at})" if at else "")
        ) from None
    if schema.get("type") != "object":
        raise ConfigError(
            f'{key}: top-level type = {_show(schema.get("type"))}: expected "object" '
            "(the model passes arguments as one JSON object)"
        )
    remote = _remote_reference(schema)
    if remote is not None:
        raise ConfigError(
            f"{key}: $ref = {remote!r}: expected a reference inside the schema (starting "
            "with '#'); arguments are checked without fetching other documents"
        )


def _remote_reference(node: object) -> str | None:
    """The first `$ref` that points outside the document, if any."""
    if isinstance(node, dict):
        for key, value in node.items():
            is_ref = key in ("$ref", "$dynamicRef") and isinstance(value, str)
            if is_ref and not value.startswith("#"):
                return str(value)
            found = _remote_reference(value)
            if found is not None:
                return found
    elif isinstance(node, list):
        for item in node:
            found = _remote_reference(item)
            if found is not None:
                return found
    return None


def _number(
    table: Mapping[str, Any],
    key: str,
    default: float,
    bounds: tuple[float, float],
    where: _Where,
    integer: bool = False,
) -> float:
    value = table.get(key, default)
    low, high = bounds
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not low <= value <= high:
        shown = f"{low:g} to {high:g}"
        raise ConfigError(f"{where(key)} = {_show(value)}: expected {kind} from {shown}")
    return float(value)


def _integer(
    table: Mapping[str, Any], key: str, default: int, bounds: tuple[int, int], where: _Where
) -> int:
    return int(_number(table, key, default, bounds, where, integer=True))


def _show(value: object) -> str:
    """A value as messages quote it: its repr, cut so a message stays one short line."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 120 else text[:117] + "..."
