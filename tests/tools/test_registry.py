"""ToolRegistry: arguments checked before any handler, results recorded, failures contained."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from telephony_agent.call.tools import (
    Tool,
    ToolContext,
    ToolError,
    ToolRegistry,
    default_registry,
)
from telephony_agent.media.leg import TransferResult
from telephony_agent.realtime.session_config import ToolSpec

BOOK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "nights": {"type": "integer", "minimum": 1},
        "guest": {"type": "string"},
    },
    "required": ["nights"],
    "additionalProperties": False,
}


class FakeCall:
    """Records what the built-ins asked of the call."""

    call_id = "call-1"

    def __init__(self) -> None:
        self.hangups: list[str] = []
        self.transfers: list[str] = []
        self.digits: list[str] = []

    def request_hangup(self, reason: str) -> None:
        self.hangups.append(reason)

    async def transfer(self, target: str) -> TransferResult:
        self.transfers.append(target)
        return TransferResult(True)

    def send_dtmf(self, digits: str) -> bool:
        self.digits.append(digits)
        return True


class Counting:
    """A handler that counts its calls and answers with what it got."""

    def __init__(self, answer: Any = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answer = answer

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        self.calls.append(args)
        return {"booked": args} if self.answer is None else self.answer


def registry_with(
    handler: Any, *, schema: dict[str, Any] | None = None, timeout_s: float = 10.0
) -> ToolRegistry:
    registry = ToolRegistry()
    spec = ToolSpec("book", "Book a room.", schema if schema is not None else BOOK_SCHEMA)
    registry.register(Tool(spec, handler, timeout_s=timeout_s))
    return registry


def error_of(output: str) -> str:
    value = json.loads(output)
    assert isinstance(value, dict) and set(value) == {"error"}
    return str(value["error"])


async def test_good_arguments_reach_the_handler_and_the_result_is_recorded(
    logs: list[dict[str, Any]],
) -> None:
    handler = Counting()
    registry = registry_with(handler)
    before = time.time()
    result = await registry.invoke("book", '{"nights": 2, "guest": "Ann Lee"}', FakeCall())
    after = time.time()

    assert handler.calls == [{"nights": 2, "guest": "Ann Lee"}]
    assert result.name == "book"
    assert result.arguments == '{"nights": 2, "guest": "Ann Lee"}'
    assert json.loads(result.output) == {"booked": {"nights": 2, "guest": "Ann Lee"}}
    assert result.ok is True and result.error is None
    assert before <= result.started_at <= after
    assert 0 <= result.duration_ms < 1000

    [event] = [e for e in logs if e["event"] == "tool_call"]
    assert event["log_level"] == "info"
    assert (event["tool"], event["ok"], event["error"]) == ("book", True, None)
    assert isinstance(event["duration_ms"], float)
    info_and_up = [e for e in logs if e["log_level"] != "debug"]
    assert "Ann Lee" not in repr(info_and_up)
    assert "Ann Lee" in repr([e for e in logs if e["log_level"] == "debug"])


async def test_run_returns_the_output_text() -> None:
    registry = registry_with(Counting(answer="plain text"))
    assert await registry.run("book", '{"nights": 1}', FakeCall()) == "plain text"


@pytest.mark.parametrize("text", ['{"nights": 2', "nights=2", "{'nights': 2}"])
async def test_bad_json_never_calls_the_handler(text: str, logs: list[dict[str, Any]]) -> None:
    handler = Counting()
    result = await registry_with(handler).invoke("book", text, FakeCall())
    assert handler.calls == []
    assert result.ok is False
    assert error_of(result.output).startswith("the arguments are not valid JSON: ")
    assert "line 1 column" in error_of(result.output)
    assert result.error == "the arguments are not valid JSON"
    [event] = [e for e in logs if e["event"] == "tool_call"]
    assert event["log_level"] == "warning" and event["ok"] is False


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ('{"guest": "Ann"}', "'nights' is a required property"),
        ('{"nights": "two"}', "$.nights: 'two' is not of type 'integer'"),
        ('{"nights": 0}', "$.nights: 0 is less than the minimum of 1"),
        ('{"nights": 1, "pets": true}', "Additional properties are not allowed ('pets'"),
        ("[1, 2]", "[1, 2] is not of type 'object'"),
        ("3", "3 is not of type 'object'"),
    ],
)
async def test_schema_mismatch_never_calls_the_handler(text: str, detail: str) -> None:
    handler = Counting()
    result = await registry_with(handler).invoke("book", text, FakeCall())
    assert handler.calls == []
    assert result.ok is False
    message = error_of(result.output)
    assert message.startswith("the arguments do not match the tool's parameters: ")
    assert detail in message
    assert result.error is not None
    assert result.error.startswith("the arguments do not match the tool's parameters (")


async def test_the_mismatch_summary_in_logs_holds_no_argument_values(
    logs: list[dict[str, Any]],
) -> None:
    result = await registry_with(Counting()).invoke("book", '{"nights": "Ann Lee"}', FakeCall())
    assert result.error == "the arguments do not match the tool's parameters (type at $.nights)"
    assert "Ann Lee" in result.output
    assert "Ann Lee" not in repr([e for e in logs if e["log_level"] != "debug"])


async def test_empty_arguments_mean_an_empty_object() -> None:
    handler = Counting()
    registry = registry_with(handler, schema={"type": "object", "properties": {}})
    result = await registry.invoke("book", "  ", FakeCall())
    assert result.ok is True and handler.calls == [{}]


async def test_a_non_object_is_refused_even_when_the_schema_allows_it() -> None:
    handler = Counting()
    result = await registry_with(handler, schema={}).invoke("book", "[1]", FakeCall())
    assert handler.calls == []
    assert error_of(result.output) == (
        "the arguments do not match the tool's parameters: expected a JSON object"
    )


async def test_an_unknown_tool_gives_an_error_output() -> None:
    result = await ToolRegistry().invoke("nope", "{}", FakeCall())
    assert error_of(result.output) == "unknown tool 'nope'"
    assert (result.ok, result.error) == (False, "unknown tool")


async def test_a_timeout_gives_the_did_not_answer_output() -> None:
    async def slow(args: dict[str, Any], ctx: ToolContext) -> str:
        await asyncio.sleep(5)
        return "never"

    began = time.monotonic()
    result = await registry_with(slow, schema={"type": "object"}, timeout_s=0.2).invoke(
        "book", "{}", FakeCall()
    )
    assert time.monotonic() - began < 1.0
    assert error_of(result.output) == "book did not answer in 0.2 s"
    assert (result.ok, result.error) == (False, "book did not answer in 0.2 s")


async def test_an_exception_gives_a_short_error_and_a_traceback_only_at_debug(
    logs: list[dict[str, Any]],
) -> None:
    async def broken(args: dict[str, Any], ctx: ToolContext) -> str:
        raise KeyError("room 12 of Ann Lee")

    result = await registry_with(broken, schema={"type": "object"}).invoke("book", "{}", FakeCall())
    assert error_of(result.output) == "book failed"
    assert (result.ok, result.error) == (False, "raised KeyError")
    assert "Ann Lee" not in result.output
    for event in logs:
        if event["log_level"] in ("warning", "error", "critical"):
            assert "exc_info" not in event and "exception" not in event
    assert any(e.get("exc_info") is True and e["log_level"] == "debug" for e in logs)


async def test_a_tool_error_is_told_to_the_model_and_recorded_as_failed() -> None:
    async def refusing(args: dict[str, Any], ctx: ToolContext) -> str:
        raise ToolError("book answered HTTP 409")

    result = await registry_with(refusing, schema={"type": "object"}).invoke(
        "book", "{}", FakeCall()
    )
    assert error_of(result.output) == "book answered HTTP 409"
    assert (result.ok, result.error) == (False, "book answered HTTP 409")


async def test_a_value_json_cannot_carry_is_an_error_output() -> None:
    result = await registry_with(Counting(answer={"x": {1, 2}}), schema={"type": "object"}).invoke(
        "book", "{}", FakeCall()
    )
    assert error_of(result.output) == "book returned a value that is not JSON"
    assert result.ok is False


async def test_builtins_still_work_and_are_validated_too() -> None:
    registry = default_registry()
    call = FakeCall()
    assert registry.names() == ("end_call", "transfer_call", "send_dtmf")

    ended = await registry.invoke("end_call", '{"reason": "done"}', call)
    assert ended.ok and json.loads(ended.output)["ok"] is True
    assert call.hangups == ["done"]

    moved = await registry.invoke("transfer_call", '{"target": "sip:desk@example.com"}', call)
    assert json.loads(moved.output) == {"ok": True}
    assert call.transfers == ["sip:desk@example.com"]

    assert json.loads(await registry.run("send_dtmf", '{"digits": "12#"}', call)) == {"ok": True}
    assert call.digits == ["12#"]

    missing = await registry.invoke("transfer_call", "{}", call)
    assert "'target' is a required property" in error_of(missing.output)
    extra = await registry.invoke("send_dtmf", '{"digits": "1", "volume": 3}', call)
    assert "Additional properties are not allowed" in error_of(extra.output)
    assert call.transfers == ["sip:desk@example.com"] and call.digits == ["12#"]


async def test_copy_is_isolated_from_the_original() -> None:
    shared = default_registry()
    per_call = shared.copy()
    handler = Counting()
    per_call.register(Tool(ToolSpec("book", "Book.", BOOK_SCHEMA), handler))

    assert "book" in per_call and "book" not in shared
    assert per_call.names() == ("end_call", "transfer_call", "send_dtmf", "book")
    assert [s.name for s in shared.specs()] == ["end_call", "transfer_call", "send_dtmf"]
    assert error_of(await shared.run("book", '{"nights": 1}', FakeCall())) == "unknown tool 'book'"
    assert (await per_call.invoke("book", '{"nights": 1}', FakeCall())).ok
    assert handler.calls == [{"nights": 1}]


async def test_re_registering_a_name_uses_the_new_schema() -> None:
    registry = registry_with(Counting())
    assert not (await registry.invoke("book", "{}", FakeCall())).ok  # nights required
    registry.register(Tool(ToolSpec("book", "Book.", {"type": "object"}), Counting()))
    assert (await registry.invoke("book", "{}", FakeCall())).ok


async def test_concurrent_invocations_each_get_their_own_result() -> None:
    async def echo(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        await asyncio.sleep(0.01 * (3 - args["nights"]))
        return {"nights": args["nights"]}

    registry = registry_with(echo)
    results = await asyncio.gather(
        *(registry.invoke("book", json.dumps({"nights": n}), FakeCall()) for n in (1, 2, 3))
    )
    assert [json.loads(r.output)["nights"] for r in results] == [1, 2, 3]
