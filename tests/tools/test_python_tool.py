"""Python tools: imported at start, sync in a thread, async awaited, failures contained."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from telephony_agent.call.tools import Tool, ToolError, ToolRegistry
from telephony_agent.errors import ConfigError
from telephony_agent.tools.context import CallInfo, ToolCallContext
from telephony_agent.tools.definitions import ToolDefinition, parse_tool_tables
from telephony_agent.tools.python_tool import PythonTool, load_python_tool

from . import sample_tools

CALL = CallInfo(
    call_id="call-7",
    profile="hotel",
    caller="+15550100",
    dialled="+15550199",
    variables={"hotel": "riverside"},
)


def definition(target: str, **extra: Any) -> ToolDefinition:
    table = {"name": "lookup", "description": "Look up.", "python": target, **extra}
    return parse_tool_tables([table], base_dir=Path("."), origin="agent.toml")[0]


def load(function: str, **extra: Any) -> PythonTool:
    return load_python_tool(definition(f"tests.tools.sample_tools:{function}", **extra))


def registry_for(tool: PythonTool) -> ToolRegistry:
    """The tool as the registry runs it (timeout and error handling included)."""

    async def handler(args: dict[str, Any], _ctx: Any) -> str:
        return await tool(args, CALL)

    registry = ToolRegistry()
    registry.register(Tool(tool.definition.spec, handler, timeout_s=tool.definition.timeout_s))
    return registry


async def test_a_sync_function_runs_in_a_worker_thread_with_the_call_context(
    logs: list[dict[str, Any]],
) -> None:
    output = await load("lookup_room")({"nights": 3}, CALL)
    value = json.loads(output)
    assert value == {
        "room": 12,
        "nights": 3,
        "call_id": "call-7",
        "profile": "hotel",
        "caller": "+15550100",
        "dialled": "+15550199",
        "variables": {"hotel": "riverside"},
        "thread": value["thread"],
    }
    assert value["thread"] != threading.current_thread().name
    assert "," in output and ", " not in output  # compact JSON
    [event] = [e for e in logs if e["event"] == "room_lookup"]
    assert (event["call_id"], event["tool"], event["nights"]) == ("call-7", "lookup", 3)


async def test_a_coroutine_function_is_awaited_and_text_passes_as_is() -> None:
    assert await load("async_lookup")({}, CALL) == "free rooms for +15550100: 3"


async def test_the_context_is_read_only_and_holds_no_logger_in_its_repr() -> None:
    assert await load("try_to_change_variables")({}, CALL) == "read-only"
    context = ToolCallContext("c", "p", "a", "b", {"k": "v"}, logger=None)  # type: ignore[arg-type]
    assert "logger" not in repr(context)
    with pytest.raises(AttributeError):
        context.call_id = "other"  # type: ignore[misc]


async def test_an_exception_is_an_error_output_without_traceback_above_debug(
    logs: list[dict[str, Any]],
) -> None:
    result = await registry_for(load("broken")).invoke("lookup", "{}", object())  # type: ignore[arg-type]
    assert json.loads(result.output) == {"error": "lookup failed"}
    assert (result.ok, result.error) == (False, "raised RuntimeError")
    assert "hunter2" not in result.output
    above_debug = [e for e in logs if e["log_level"] != "debug"]
    assert above_debug and all("exc_info" not in e for e in above_debug)
    assert "hunter2" not in repr(above_debug)


async def test_a_sync_function_past_its_timeout_gives_the_did_not_answer_output() -> None:
    sample_tools.sleepy_done.clear()
    registry = registry_for(load("sleepy", timeout_s=0.2))
    began = time.monotonic()
    result = await registry.invoke("lookup", '{"seconds": 0.6}', object())  # type: ignore[arg-type]
    assert time.monotonic() - began < 0.5
    assert json.loads(result.output) == {"error": "lookup did not answer in 0.2 s"}
    assert result.ok is False
    # The worker thread cannot be stopped; let it finish so it does not outlive the test.
    assert await asyncio.to_thread(sample_tools.sleepy_done.wait, 2.0)


async def test_a_coroutine_past_its_timeout_is_cancelled() -> None:
    registry = registry_for(load("async_sleepy", timeout_s=0.1))
    result = await registry.invoke("lookup", '{"seconds": 5}', object())  # type: ignore[arg-type]
    assert json.loads(result.output) == {"error": "lookup did not answer in 0.1 s"}


async def test_a_value_json_cannot_carry_is_an_error_output() -> None:
    with pytest.raises(ToolError, match=r"^lookup returned a dict, which cannot be sent as JSON$"):
        await load("not_serialisable")({}, CALL)
    result = await registry_for(load("not_serialisable")).invoke("lookup", "{}", object())  # type: ignore[arg-type]
    assert json.loads(result.output) == {
        "error": "lookup returned a dict, which cannot be sent as JSON"
    }
    assert result.ok is False


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("tests.tools.no_such_module:fn", "no module named 'tests.tools.no_such_module'"),
        ("no_such_package_xyz.mod:fn", "no module named 'no_such_package_xyz'"),
        (
            "tests.tools.missing_dependency:fn",
            "importing tests.tools.missing_dependency failed: no module named "
            "'telephony_agent_no_such_dependency'",
        ),
        (
            "tests.tools.broken_on_import:fn",
            "importing tests.tools.broken_on_import raised RuntimeError: cannot connect to the "
            "booking database",
        ),
        ("tests.tools.sample_tools:no_such_function", "tests.tools.sample_tools has no attribute"),
        ("tests.tools.sample_tools:NOT_A_FUNCTION", "NOT_A_FUNCTION is a int, not a function"),
        ("tests.tools.sample_tools:lookup_room.nope", "has no attribute 'nope'"),
    ],
)
def test_import_problems_are_config_errors_at_load(target: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_python_tool(definition(target))
    message = str(info.value)
    assert message.startswith(f"agent.toml: tools[lookup].python = {target!r}: ")
    assert reason in message
    assert "\n" not in message and "Traceback" not in message
