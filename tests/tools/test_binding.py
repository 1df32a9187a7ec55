"""BusinessTools: loaded once, bound per call onto a copy of the built-in registry."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from telephony_agent.call.tools import default_registry
from telephony_agent.errors import ConfigError
from telephony_agent.tools.binding import REGISTRY_MARGIN_S, BusinessTools
from telephony_agent.tools.context import CallInfo
from telephony_agent.tools.definitions import ToolDefinition, parse_tool_tables

from .hook_server import HookServer, Reply, running

SECRET = "whsec-binding-7c1d02aa"


def call_info(call_id: str) -> CallInfo:
    return CallInfo(call_id=call_id, profile="hotel", caller="+15550100", dialled="+15550199")


def definitions(url: str, **webhook: Any) -> tuple[ToolDefinition, ...]:
    tables = [
        {
            "name": "book_room",
            "description": "Book a room.",
            "webhook": url,
            "secret_env": "BOOKING_SECRET",
            "parameters": {
                "type": "object",
                "properties": {"nights": {"type": "integer"}},
                "required": ["nights"],
            },
            **webhook,
        },
        {
            "name": "lookup",
            "description": "Look a room up.",
            "python": "tests.tools.sample_tools:lookup_room",
        },
    ]
    return parse_tool_tables(tables, base_dir=Path("."), origin="agent.toml")


@pytest.fixture
async def server() -> AsyncIterator[HookServer]:
    async with running(HookServer(Reply(body=b'{"booked": true}'))) as hook:
        yield hook


async def test_bound_tools_run_through_the_registry_with_their_call(server: HookServer) -> None:
    tools = BusinessTools.load(definitions(server.url), {"BOOKING_SECRET": SECRET})
    try:
        assert tools.names() == frozenset({"book_room", "lookup"})
        base = default_registry()
        first = tools.registry_for(["book_room", "lookup"], call_info("call-1"), base)
        second = tools.registry_for(["lookup"], call_info("call-2"), base)

        assert base.names() == ("end_call", "transfer_call", "send_dtmf")
        assert first.names() == ("end_call", "transfer_call", "send_dtmf", "book_room", "lookup")
        assert second.names() == ("end_call", "transfer_call", "send_dtmf", "lookup")
        assert [s.name for s in first.specs()][-2:] == ["book_room", "lookup"]
        assert first.specs()[-2].parameters["required"] == ["nights"]

        ctx: Any = object()  # the live Call is never touched by a business tool
        booked = await first.invoke("book_room", '{"nights": 2}', ctx)
        assert booked.ok and booked.output == '{"booked":true}'
        assert json.loads(server.seen[0].body)["call_id"] == "call-1"

        looked = await second.invoke("lookup", '{"nights": 1}', ctx)
        assert json.loads(looked.output)["call_id"] == "call-2"
        assert (await second.invoke("book_room", '{"nights": 2}', ctx)).ok is False

        refused = await first.invoke("book_room", '{"nights": "two"}', ctx)
        assert refused.ok is False and len(server.seen) == 1
    finally:
        await tools.aclose()


async def test_a_failing_webhook_gives_its_own_error_within_its_budget(
    logs: list[dict[str, Any]],
) -> None:
    async with running(HookServer(Reply(delay_s=3.0))) as hook:
        tools = BusinessTools.load(
            definitions(hook.url, timeout_s=0.2, retries=2), {"BOOKING_SECRET": SECRET}
        )
        try:
            registry = tools.registry_for(["book_room"], call_info("c"), default_registry())
            began = time.monotonic()
            result = await registry.invoke("book_room", '{"nights": 1}', object())  # type: ignore[arg-type]
            elapsed = time.monotonic() - began
        finally:
            await tools.aclose()
    # 3 attempts of 0.2 s and pauses of 0.2 s and 0.4 s: the webhook's message, not the
    # registry's (which allows the budget plus a margin).
    assert json.loads(result.output) == {"error": "book_room did not answer in 0.2 s"}
    assert 1.15 <= elapsed < 1.0 + 0.2 + 0.4 + REGISTRY_MARGIN_S
    assert len(hook.seen) == 3
    assert SECRET not in repr(logs)


async def test_an_unknown_name_is_a_config_error(server: HookServer) -> None:
    tools = BusinessTools.load(definitions(server.url), {"BOOKING_SECRET": SECRET})
    try:
        with pytest.raises(ConfigError) as info:
            tools.registry_for(["lookup", "book_rooom"], call_info("c"), default_registry())
        assert str(info.value) == (
            "tool 'book_rooom' is not defined in [[tools]] (defined: book_room, lookup)"
        )
    finally:
        await tools.aclose()


def test_loading_stops_on_a_missing_secret_or_a_bad_import() -> None:
    with pytest.raises(ConfigError, match=r"tools\[book_room\]\.secret_env"):
        BusinessTools.load(definitions("https://h.example/x"), {})
    bad = parse_tool_tables(
        [{"name": "x", "description": "d", "python": "tests.tools.sample_tools:nope"}],
        base_dir=Path("."),
        origin="agent.toml",
    )
    with pytest.raises(ConfigError, match=r"tools\[x\]\.python"):
        BusinessTools.load(bad, {})


def test_no_tools_bind_to_a_plain_copy() -> None:
    tools = BusinessTools.load((), {})
    base = default_registry()
    registry = tools.registry_for([], call_info("c"), base)
    assert registry is not base and registry.names() == base.names()
