"""Webhook tools against a real local HTTP server: signing, retries, timeouts, answers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from telephony_agent.call.tools import ToolError
from telephony_agent.errors import ConfigError
from telephony_agent.logs import redact_text
from telephony_agent.tools.context import CallInfo
from telephony_agent.tools.definitions import ToolDefinition, parse_tool_tables
from telephony_agent.tools.webhook import (
    WebhookClient,
    WebhookTool,
    backoff_s,
    budget_s,
    load_webhook_tool,
)

from .hook_server import HookServer, Reply, closed_port, running

SECRET = "whsec-test-5f2b9c1e7a"
CALL = CallInfo(
    call_id="call-42",
    profile="hotel",
    caller="+15550100",
    dialled="+15550199",
    variables={"hotel": "riverside"},
)


@pytest.fixture
async def client() -> AsyncIterator[WebhookClient]:
    webhook_client = WebhookClient()
    try:
        yield webhook_client
    finally:
        await webhook_client.aclose()


def definition(url: str, **extra: Any) -> ToolDefinition:
    table = {"name": "book_room", "description": "Book a room.", "webhook": url, **extra}
    return parse_tool_tables([table], base_dir=Path("."), origin="agent.toml")[0]


def tool(
    client: WebhookClient, url: str, environ: dict[str, str] | None = None, **extra: Any
) -> WebhookTool:
    return load_webhook_tool(definition(url, **extra), environ or {}, client)


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The receiver's own computation, independent of the agent's code."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


async def test_a_signed_request_carries_the_call_and_the_arguments(
    client: WebhookClient, logs: list[dict[str, Any]]
) -> None:
    answer = json.dumps({"booked": True, "room": 12, "note": "café"}, indent=4).encode()
    async with running(HookServer(Reply(body=answer))) as server:
        webhook = tool(
            client,
            server.url,
            {"BOOKING_SECRET": SECRET},
            secret_env="BOOKING_SECRET",
            headers={"X-Hotel": "riverside"},
        )
        output = await webhook({"nights": 2, "guest": "Ann"}, CALL)

    assert output == '{"booked":true,"room":12,"note":"café"}'
    [seen] = server.seen
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["X-Hotel"] == "riverside"
    timestamp = seen.headers["X-Telephony-Agent-Timestamp"]
    assert timestamp.isdigit() and abs(int(timestamp) - time.time()) < 5
    assert seen.headers["X-Telephony-Agent-Signature"] == expected_signature(
        SECRET, timestamp, seen.body
    )
    assert seen.headers["X-Telephony-Agent-Signature"] != expected_signature(
        SECRET + "x", timestamp, seen.body
    )
    body = json.loads(seen.body)
    assert list(body) == ["call_id", "profile", "caller", "dialled", "tool", "arguments"]
    assert body == {
        "call_id": "call-42",
        "profile": "hotel",
        "caller": "+15550100",
        "dialled": "+15550199",
        "tool": "book_room",
        "arguments": {"nights": 2, "guest": "Ann"},
    }
    assert SECRET not in output
    assert SECRET not in repr(logs)
    assert SECRET not in repr(webhook)


async def test_the_secret_is_masked_by_the_log_redactor_once_loaded(client: WebhookClient) -> None:
    secret = "whsec-redactor-check-93kd"
    tool(client, "https://h.example/x", {"S": secret}, secret_env="S")
    assert redact_text(f"value {secret} here") == "value *** here"


async def test_no_secret_means_no_signature_header(client: WebhookClient) -> None:
    async with running(HookServer()) as server:
        assert await tool(client, server.url)({}, CALL) == '{"ok":true}'
    [seen] = server.seen
    assert "X-Telephony-Agent-Signature" not in seen.headers
    assert seen.headers["X-Telephony-Agent-Timestamp"].isdigit()


@pytest.mark.parametrize("environ", [{}, {"BOOKING_SECRET": ""}, {"BOOKING_SECRET": "  "}])
async def test_a_missing_secret_variable_stops_the_start(
    client: WebhookClient, environ: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as info:
        tool(client, "https://h.example/x", environ, secret_env="BOOKING_SECRET")
    message = str(info.value)
    assert message.startswith(
        "agent.toml: tools[book_room].secret_env = 'BOOKING_SECRET': expected that environment"
    )
    assert "\n" not in message


async def test_no_answer_in_time_is_retried_then_an_error_within_the_budget(
    client: WebhookClient,
) -> None:
    async with running(HookServer(Reply(delay_s=3.0))) as server:
        webhook = tool(client, server.url, timeout_s=0.3, retries=1)
        began = time.monotonic()
        with pytest.raises(ToolError) as info:
            await webhook({}, CALL)
        elapsed = time.monotonic() - began
    assert str(info.value) == "book_room did not answer in 0.3 s"
    assert webhook.budget_s == pytest.approx(0.3 * 2 + 0.2)
    assert 0.75 <= elapsed < 1.3
    assert len(server.seen) == 2


async def test_a_5xx_is_retried_after_a_backoff_and_then_succeeds(
    client: WebhookClient, logs: list[dict[str, Any]]
) -> None:
    replies = (Reply(status=503, body=b"busy", content_type="text/plain"), Reply(body=b'{"a": 1}'))
    async with running(HookServer(*replies)) as server:
        output = await tool(client, server.url, retries=2)({"nights": 1}, CALL)
    assert output == '{"a":1}'
    assert len(server.seen) == 2
    assert server.seen[1].at - server.seen[0].at >= 0.19
    assert server.seen[0].body == server.seen[1].body
    retries = [e for e in logs if e["event"] == "webhook_retry"]
    assert [(e["attempt"], e["reason"]) for e in retries] == [(1, "book_room answered HTTP 503")]


async def test_a_5xx_every_time_ends_as_an_http_error(client: WebhookClient) -> None:
    async with running(HookServer(Reply(status=500))) as server:
        with pytest.raises(ToolError, match=r"^book_room answered HTTP 500$"):
            await tool(client, server.url, retries=1)({}, CALL)
    assert len(server.seen) == 2


@pytest.mark.parametrize("status", [400, 404, 409, 422])
async def test_a_4xx_is_never_retried(client: WebhookClient, status: int) -> None:
    async with running(HookServer(Reply(status=status))) as server:
        with pytest.raises(ToolError) as info:
            await tool(client, server.url, retries=3)({}, CALL)
        await asyncio.sleep(0.3)  # long enough for a retry after the 0.2 s backoff
    assert str(info.value) == f"book_room answered HTTP {status}"
    assert len(server.seen) == 1


async def test_redirects_are_not_followed(client: WebhookClient) -> None:
    async with running(HookServer(Reply(status=302, headers={"Location": "/elsewhere"}))) as server:
        with pytest.raises(ToolError) as info:
            await tool(client, server.url)({}, CALL)
    assert str(info.value) == "book_room answered HTTP 302 (redirects are not followed)"
    assert [s.path for s in server.seen] == ["/hook"]


async def test_an_html_page_is_an_error_whatever_its_status(client: WebhookClient) -> None:
    page = b"<!DOCTYPE html><html><body>Please log in</body></html>"
    async with running(HookServer(Reply(body=page, content_type="text/html"))) as server:
        with pytest.raises(ToolError, match=r"^book_room answered with an HTML page, not data$"):
            await tool(client, server.url)({}, CALL)
    async with running(HookServer(Reply(body=page, content_type="text/plain"))) as server:
        with pytest.raises(ToolError, match="HTML page"):
            await tool(client, server.url)({}, CALL)
    error_page = Reply(status=502, body=b"<html>Bad gateway</html>", content_type="text/html")
    async with running(HookServer(error_page)) as server:
        with pytest.raises(ToolError, match=r"^book_room answered HTTP 502$"):
            await tool(client, server.url, retries=0)({}, CALL)


async def test_a_closed_port_is_retried_then_reported(
    client: WebhookClient, logs: list[dict[str, Any]]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    began = time.monotonic()
    with pytest.raises(ToolError) as info:
        await tool(client, url, retries=2, timeout_s=2)({}, CALL)
    elapsed = time.monotonic() - began
    assert str(info.value) == "book_room could not be reached"
    assert elapsed >= backoff_s(0) + backoff_s(1) - 0.02
    assert elapsed < 2.0
    assert [e["attempt"] for e in logs if e["event"] == "webhook_retry"] == [1, 2]


async def test_a_large_answer_is_truncated_and_marked(client: WebhookClient) -> None:
    text = ("abcdefghij" * 600).encode()
    async with running(HookServer(Reply(body=text, content_type="text/plain"))) as server:
        output = await tool(client, server.url, max_output_chars=100)({}, CALL)
    assert len(output) == 100
    assert output == "abcdefghij" * 9 + "abcdefghi…"

    big = json.dumps({"rooms": list(range(2000))}, indent=2).encode()
    async with running(HookServer(Reply(body=big))) as server:
        output = await tool(client, server.url, max_output_chars=100)({}, CALL)
    assert len(output) == 100 and output.endswith("…")
    assert output.startswith('{"rooms":[0,1,2,3')


async def test_a_huge_answer_is_read_only_up_to_a_cap(client: WebhookClient) -> None:
    huge = b"x" * (4 << 20)
    async with running(HookServer(Reply(body=huge, content_type="text/plain"))) as server:
        output = await tool(client, server.url, max_output_chars=100)({}, CALL)
    assert output == "x" * 99 + "…"


async def test_plain_text_and_empty_answers(client: WebhookClient) -> None:
    async with running(HookServer(Reply(body=b"Room 12 is yours", content_type="text/plain"))) as s:
        assert await tool(client, s.url)({}, CALL) == "Room 12 is yours"
    async with running(HookServer(Reply(status=204, body=b""))) as s:
        assert await tool(client, s.url)({}, CALL) == '{"ok":true}'


async def test_the_client_session_is_shared_and_reopens_after_aclose(
    client: WebhookClient,
) -> None:
    async with running(HookServer()) as server:
        first, second = tool(client, server.url), tool(client, server.url)
        await first({}, CALL)
        session = client.session()
        await second({}, CALL)
        assert client.session() is session
        await client.aclose()
        assert session.closed
        assert await first({}, CALL) == '{"ok":true}'
    assert len(server.seen) == 3


def test_backoff_and_budget() -> None:
    assert [backoff_s(n) for n in range(6)] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert budget_s(5, 2) == pytest.approx(15 + 0.2 + 0.4)
    assert budget_s(1, 0) == 1
