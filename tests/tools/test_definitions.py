"""`[[tools]]` tables: what parses, and the one-line message naming the key for what does not."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from telephony_agent.errors import ConfigError
from telephony_agent.tools.definitions import ToolDefinition, parse_tool_tables

GOOD = """
[[tools]]
name = "book_room"
description = "Book a hotel room."
webhook = "https://booking.example.com/hooks/book"
secret_env = "BOOKING_SECRET"
timeout_s = 3
retries = 1
max_output_chars = 2000
headers = { X-Hotel = "riverside" }

[tools.parameters]
type = "object"
required = ["nights"]
properties.nights = { type = "integer", minimum = 1 }

[[tools]]
name = "lookup-room"
description = "Look a room up."
python = "tests.tools.sample_tools:lookup_room"
parameters_file = "schemas/lookup.json"

[[tools]]
name = "ping"
description = "  No arguments.  "
webhook = "http://127.0.0.1:9000/ping"
"""

LOOKUP_SCHEMA = {"type": "object", "properties": {"room": {"type": "string"}}}


def parse(raw: object, base_dir: Path = Path("/nonexistent")) -> tuple[ToolDefinition, ...]:
    return parse_tool_tables(raw, base_dir=base_dir, origin="agent.toml")


def error_of(tables: Any, base_dir: Path = Path("/nonexistent")) -> str:
    with pytest.raises(ConfigError) as info:
        parse(tables, base_dir)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("agent.toml: ")
    return message


def webhook_table(**extra: Any) -> dict[str, Any]:
    return {"name": "book", "description": "Book.", "webhook": "https://h.example/x", **extra}


def python_table(**extra: Any) -> dict[str, Any]:
    return {"name": "calc", "description": "Calc.", "python": "pkg.mod:fn", **extra}


def test_a_good_file_parses_with_defaults_and_relative_schema_file(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "lookup.json").write_text(json.dumps(LOOKUP_SCHEMA))
    book, lookup, ping = parse(tomllib.loads(GOOD)["tools"], tmp_path)

    assert book.kind == "webhook"
    assert book.webhook == "https://booking.example.com/hooks/book"
    assert (book.timeout_s, book.retries, book.max_output_chars) == (3.0, 1, 2000)
    assert book.secret_env == "BOOKING_SECRET"
    assert dict(book.headers) == {"X-Hotel": "riverside"}
    assert book.spec.name == "book_room"
    assert book.spec.parameters["required"] == ["nights"]
    assert book.origin == "agent.toml"

    assert lookup.kind == "python"
    assert lookup.python == "tests.tools.sample_tools:lookup_room"
    assert lookup.timeout_s == 10.0
    assert lookup.spec.parameters == LOOKUP_SCHEMA
    assert lookup.parameters_file == tmp_path / "schemas" / "lookup.json"

    assert (ping.timeout_s, ping.retries, ping.max_output_chars) == (5.0, 2, 4000)
    assert ping.secret_env is None and dict(ping.headers) == {}
    assert ping.description == "No arguments."
    assert ping.spec.parameters == {"type": "object", "properties": {}}


def test_an_empty_list_is_no_tools() -> None:
    assert parse([]) == ()


@pytest.mark.parametrize("raw", [{"name": "x"}, "tools", 3])
def test_tools_must_be_a_list_of_tables(raw: object) -> None:
    assert "tools = " in error_of(raw)
    assert "expected a list of [[tools]] tables" in error_of(raw)


def test_each_entry_must_be_a_table() -> None:
    assert error_of([webhook_table(), "x"]) == "agent.toml: tools[1] = 'x': expected a table"


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        (None, "tools[0].name is missing"),
        ("has space", "tools[0].name = 'has space': expected 1 to 64 letters"),
        ("x" * 65, "tools[0].name = 'xxxx"),
        ("", "tools[0].name = '': expected 1 to 64"),
        ("book\n", "tools[0].name = 'book\\n': expected 1 to 64"),
        (5, "tools[0].name = 5: expected"),
    ],
)
def test_name_rules(name: object, needle: str) -> None:
    table = webhook_table()
    if name is None:
        del table["name"]
    else:
        table["name"] = name
    assert needle in error_of([table])


@pytest.mark.parametrize("builtin", ["end_call", "transfer_call", "send_dtmf"])
def test_a_builtin_name_is_refused(builtin: str) -> None:
    message = error_of([webhook_table(name=builtin)])
    assert f"tools[0].name = {builtin!r}: expected a name other than the built-in" in message


def test_names_are_unique() -> None:
    message = error_of([webhook_table(), python_table(), webhook_table()])
    assert message == (
        "agent.toml: tools[2].name = 'book': expected a unique name (tools[0] already uses it)"
    )


def test_an_unknown_key_names_the_tool_and_suggests_the_right_one() -> None:
    message = error_of([webhook_table(timout_s=3)])
    assert message == (
        "agent.toml: unknown key tools[book].timout_s (did you mean tools[book].timeout_s?)"
    )
    assert error_of([webhook_table(colour="red")]) == "agent.toml: unknown key tools[book].colour"


def test_a_typo_of_webhook_is_reported_as_an_unknown_key_not_as_missing() -> None:
    table = {"name": "book", "description": "Book.", "webhok": "https://h.example/x"}
    assert "unknown key tools[book].webhok (did you mean tools[book].webhook?)" in error_of([table])


@pytest.mark.parametrize("key", ["retries", "max_output_chars", "secret_env", "headers"])
def test_webhook_only_keys_are_refused_on_a_python_tool(key: str) -> None:
    message = error_of([python_table(**{key: 1})])
    assert message == (
        f"agent.toml: tools[calc].{key}: only webhook tools take this key, this is python"
    )


@pytest.mark.parametrize("description", [None, "", "   ", 3])
def test_description_is_required(description: object) -> None:
    table = webhook_table()
    if description is None:
        del table["description"]
    else:
        table["description"] = description
    message = error_of([table])
    assert "tools[book].description" in message
    assert "expected a non-empty string" in message


def test_webhook_and_python_together_is_an_error() -> None:
    message = error_of([webhook_table(python="pkg.mod:fn")])
    assert message == "agent.toml: tools[book].python: expected either webhook or python, not both"


def test_neither_webhook_nor_python_is_an_error() -> None:
    message = error_of([{"name": "book", "description": "Book."}])
    assert message.startswith("agent.toml: tools[book].webhook is missing: expected webhook = ")
    assert "python = " in message


@pytest.mark.parametrize(
    "url",
    ["ftp://h.example/x", "https://", "booking.example.com/x", "https://h.example:port/x", 7],
)
def test_webhook_must_be_an_http_url_with_a_host(url: object) -> None:
    message = error_of([webhook_table(webhook=url)])
    assert f"tools[book].webhook = {url!r}: expected an http:// or https:// URL" in message


def test_credentials_in_the_webhook_url_are_refused_without_echoing_them() -> None:
    message = error_of([webhook_table(webhook="https://bob:s3cr3t-pass@h.example/x")])
    assert "tools[book].webhook = 'https://***@h.example/x'" in message
    assert "s3cr3t-pass" not in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("timeout_s", -1, "tools[book].timeout_s = -1: expected a number from 0.1 to 120"),
        ("timeout_s", 0.05, "tools[book].timeout_s = 0.05: expected a number from 0.1 to 120"),
        ("timeout_s", 121, "tools[book].timeout_s = 121: expected a number from 0.1 to 120"),
        ("timeout_s", "5", "tools[book].timeout_s = '5': expected a number from 0.1 to 120"),
        ("timeout_s", True, "tools[book].timeout_s = True: expected a number from 0.1 to 120"),
        ("retries", 11, "tools[book].retries = 11: expected an integer from 0 to 10"),
        ("retries", 1.5, "tools[book].retries = 1.5: expected an integer from 0 to 10"),
        ("retries", -1, "tools[book].retries = -1: expected an integer from 0 to 10"),
        (
            "max_output_chars",
            99,
            "tools[book].max_output_chars = 99: expected an integer from 100 to 100000",
        ),
        (
            "max_output_chars",
            100_001,
            "tools[book].max_output_chars = 100001: expected an integer from 100 to 100000",
        ),
    ],
)
def test_number_ranges(key: str, value: object, expected: str) -> None:
    assert error_of([webhook_table(**{key: value})]) == f"agent.toml: {expected}"


def test_range_edges_are_accepted() -> None:
    low = parse([webhook_table(timeout_s=0.1, retries=0, max_output_chars=100)])[0]
    high = parse([webhook_table(timeout_s=120, retries=10, max_output_chars=100_000)])[0]
    assert (low.timeout_s, low.retries, low.max_output_chars) == (0.1, 0, 100)
    assert (high.timeout_s, high.retries, high.max_output_chars) == (120.0, 10, 100_000)


def test_python_timeout_has_the_same_range() -> None:
    message = error_of([python_table(timeout_s=0)])
    assert message == "agent.toml: tools[calc].timeout_s = 0: expected a number from 0.1 to 120"
    assert parse([python_table(timeout_s=2.5)])[0].timeout_s == 2.5


@pytest.mark.parametrize(
    "target", ["pkg.mod", "pkg.mod:", ":fn", "pkg mod:fn", "pkg.1mod:fn", "pkg.mod:fn\n", 3]
)
def test_python_target_shape(target: object) -> None:
    message = error_of([python_table(python=target)])
    assert f"tools[calc].python = {target!r}: expected 'package.module:function'" in message


def test_python_target_may_name_an_attribute_path() -> None:
    assert parse([python_table(python="pkg.mod:Tools.lookup")])[0].python == "pkg.mod:Tools.lookup"


@pytest.mark.parametrize("value", ["1BAD", "has-dash", "", "NAME\n", 5])
def test_secret_env_must_be_a_variable_name(value: object) -> None:
    message = error_of([webhook_table(secret_env=value)])
    assert f"tools[book].secret_env = {value!r}: expected the name of an environment" in message


def test_headers_must_be_a_table_of_one_line_strings() -> None:
    assert "tools[book].headers = 'x': expected a table of strings" in error_of(
        [webhook_table(headers="x")]
    )
    assert "tools[book].headers.X-Num: expected a string on one line" in error_of(
        [webhook_table(headers={"X-Num": 5})]
    )
    message = error_of([webhook_table(headers={"Authorization": "Bearer abc\r\nX-Evil: 1"})])
    assert message == "agent.toml: tools[book].headers.Authorization: expected a string on one line"
    assert "tools[book].headers.Bad Name: expected a header name" in error_of(
        [webhook_table(headers={"Bad Name": "v"})]
    )


@pytest.mark.parametrize("header", ["Content-Type", "x-telephony-agent-signature", "Host"])
def test_headers_the_agent_sets_cannot_be_replaced(header: str) -> None:
    message = error_of([webhook_table(headers={header: "v"})])
    assert (
        message
        == f"agent.toml: tools[book].headers.{header}: this header is set by the agent itself"
    )


def test_parameters_and_parameters_file_together_is_an_error() -> None:
    table = webhook_table(parameters={"type": "object"}, parameters_file="x.json")
    assert error_of([table]) == (
        "agent.toml: tools[book].parameters_file: expected parameters or parameters_file"
    )


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        (
            {"type": "objekt"},
            "tools[book].parameters: not a valid JSON Schema: 'objekt' is not valid",
        ),
        (
            {"type": "object", "properties": {"n": {"type": 5}}},
            "tools[book].parameters: not a valid JSON Schema: 5 is not valid",
        ),
        (
            {"type": "object", "required": "nights"},
            "tools[book].parameters: not a valid JSON Schema: 'nights' is not of type 'array'",
        ),
        (
            {"type": "string"},
            "tools[book].parameters: top-level type = 'string': expected \"object\"",
        ),
        ({"properties": {}}, 'tools[book].parameters: top-level type = None: expected "object"'),
        ("object", "tools[book].parameters = 'object': expected a JSON Schema table"),
        (
            {"type": "object", "properties": {"a": {"$ref": "https://schemas.example/a.json"}}},
            "tools[book].parameters: $ref = 'https://schemas.example/a.json': expected a reference",
        ),
    ],
)
def test_bad_inline_schemas(schema: object, needle: str) -> None:
    assert needle in error_of([webhook_table(parameters=schema)])


def test_local_references_are_accepted() -> None:
    schema = {
        "type": "object",
        "$defs": {"day": {"type": "string"}},
        "properties": {"from": {"$ref": "#/$defs/day"}},
    }
    assert parse([webhook_table(parameters=schema)])[0].spec.parameters == schema


def test_toml_dates_in_a_schema_are_refused() -> None:
    raw = tomllib.loads(
        '[[tools]]\nname = "book"\ndescription = "d"\nwebhook = "https://h.example/x"\n'
        'parameters = { type = "object", default = 2024-01-01 }\n'
    )["tools"]
    assert "tools[book].parameters: expected JSON values only" in error_of(raw)


def test_parameters_file_errors(tmp_path: Path) -> None:
    assert (
        "tools[book].parameters_file = 'missing.json': cannot read "
        f"{tmp_path / 'missing.json'} (No such file or directory)"
    ) in error_of([webhook_table(parameters_file="missing.json")], tmp_path)

    (tmp_path / "broken.json").write_text('{"type": "object",}')
    assert (
        "tools[book].parameters_file = 'broken.json': not valid JSON (Expecting property name"
    ) in error_of([webhook_table(parameters_file="broken.json")], tmp_path)

    (tmp_path / "list.json").write_text("[1, 2]")
    assert "tools[book].parameters_file (list.json): expected a JSON object (a schema)" in error_of(
        [webhook_table(parameters_file="list.json")], tmp_path
    )

    (tmp_path / "string.json").write_text('{"type": "string"}')
    assert "tools[book].parameters_file (string.json): top-level type = 'string'" in error_of(
        [webhook_table(parameters_file="string.json")], tmp_path
    )

    assert "tools[book].parameters_file = 3: expected the path of a JSON file" in error_of(
        [webhook_table(parameters_file=3)], tmp_path
    )


def test_an_absolute_parameters_file_ignores_base_dir(tmp_path: Path) -> None:
    path = tmp_path / "abs.json"
    path.write_text(json.dumps(LOOKUP_SCHEMA))
    definition = parse([webhook_table(parameters_file=str(path))], Path("/elsewhere"))[0]
    assert definition.spec.parameters == LOOKUP_SCHEMA


def test_errors_after_the_name_use_the_name_and_before_it_the_index() -> None:
    assert error_of([webhook_table(), {"description": "d"}]).startswith(
        "agent.toml: tools[1].name is missing"
    )
    assert error_of([webhook_table(), python_table(timeout_s=-2)]).startswith(
        "agent.toml: tools[calc].timeout_s = -2"
    )
