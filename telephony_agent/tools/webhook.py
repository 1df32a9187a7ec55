"""Webhook tools: the model's call becomes a signed HTTP POST to the operator's system.

Why so strict about time and retries: the caller is waiting on the line. Each attempt has
its own timeout, the whole call has a fixed budget (`timeout_s * (retries + 1)` plus the
backoff), and only failures that may pass (no connection, no answer, a 5xx) are tried
again; a 4xx means the request itself was refused, so repeating it would only double a
side effect. Whatever happens, the model gets an output it can talk about.

The body is serialised once and signed as `"<timestamp>.<body>"` with HMAC-SHA256, so the
receiver can check both origin and freshness without parsing anything first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import structlog

from telephony_agent.call.tools import ToolError
from telephony_agent.errors import ConfigError
from telephony_agent.logs import register_secret
from telephony_agent.tools.context import CallInfo
from telephony_agent.tools.definitions import ToolDefinition

log = structlog.get_logger(__name__)

TIMESTAMP_HEADER = "X-Telephony-Agent-Timestamp"
SIGNATURE_HEADER = "X-Telephony-Agent-Signature"
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 2.0
TRUNCATION_MARK = "…"
#: An answer to an empty 2xx body, so the model still hears that the request went through.
EMPTY_ANSWER = '{"ok":true}'
#: Header names whose static values are credentials and are masked in logs like secrets.
_CREDENTIAL_HEADER = re.compile(r"(auth|token|key|secret|cookie|password)", re.I)
_HTML_START = re.compile(rb"^\s*(<!doctype\s+html|<html)", re.I)


def backoff_s(retry: int) -> float:
    """The pause before retry number `retry` (0-based): 0.2 s, 0.4 s, … capped at 2 s."""
    return float(min(BACKOFF_FIRST_S * 2**retry, BACKOFF_MAX_S))


def budget_s(timeout_s: float, retries: int) -> float:
    """The longest a webhook call may take: every attempt's timeout plus every pause."""
    return timeout_s * (retries + 1) + sum(backoff_s(n) for n in range(retries))


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value: `sha256=` + hex HMAC-SHA256 of `"<timestamp>.<body>"`."""
    digest = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class WebhookClient:
    """The one HTTP client session shared by all webhook tools of a process.

    Created lazily because an aiohttp session belongs to the running event loop, and
    closed by `aclose()` so no connection outlives the service.
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None),
                headers={"User-Agent": "telephony-agent"},
            )
        return self._session

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


class _Retryable(Exception):
    """One attempt failed in a way that may pass; the message is for the model."""


class WebhookTool:
    """One `webhook = …` tool, ready to call (its secret already read from the environment)."""

    def __init__(
        self, definition: ToolDefinition, client: WebhookClient, secret: bytes | None
    ) -> None:
        if definition.webhook is None:
            raise ValueError(f"{definition.name} is not a webhook tool")
        self.definition = definition
        self._url = definition.webhook
        self._client = client
        self._secret = secret

    def __repr__(self) -> str:
        return f"WebhookTool({self.definition.name!r}, signed={self._secret is not None})"

    @property
    def budget_s(self) -> float:
        return budget_s(self.definition.timeout_s, self.definition.retries)

    async def __call__(self, arguments: Mapping[str, Any], call: CallInfo) -> str:
        """POST the call and its arguments; the answer text, or ToolError for the model."""
        name = self.definition.name
        body = json.dumps(
            {
                "call_id": call.call_id,
                "profile": call.profile,
                "caller": call.caller,
                "dialled": call.dialled,
                "tool": name,
                "arguments": dict(arguments),
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.budget_s
        retries = self.definition.retries
        failure = f"{name} could not be reached"
        for attempt in range(retries + 1):
            left = deadline - loop.time()
            try:
                async with asyncio.timeout(min(self.definition.timeout_s, max(left, 0.0))):
                    return await self._attempt(body)
            except _Retryable as exc:
                failure = str(exc)
            except TimeoutError:
                failure = f"{name} did not answer in {self.definition.timeout_s:g} s"
            except (aiohttp.ClientError, OSError) as exc:
                log.debug("webhook_error", tool=name, error=type(exc).__name__)
                failure = f"{name} could not be reached"
            if attempt == retries:
                break
            pause = backoff_s(attempt)
            if deadline - loop.time() - pause < 0.05:
                break
            log.info("webhook_retry", tool=name, attempt=attempt + 1, reason=failure)
            await asyncio.sleep(pause)
        raise ToolError(failure)

    async def _attempt(self, body: bytes) -> str:
        name = self.definition.name
        timestamp = int(time.time())
        headers = {**self.definition.headers, "Content-Type": "application/json"}
        headers[TIMESTAMP_HEADER] = str(timestamp)
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        session = self._client.session()
        async with session.post(
            self._url, data=body, headers=headers, allow_redirects=False
        ) as response:
            status = response.status
            if status >= 500:
                raise _Retryable(f"{name} answered HTTP {status}")
            if not 200 <= status < 300:
                note = " (redirects are not followed)" if 300 <= status < 400 else ""
                raise ToolError(f"{name} answered HTTP {status}{note}")
            raw, complete = await _read_capped(response, self._byte_cap())
            charset = response.charset or "utf-8"
            if response.content_type == "text/html" or _HTML_START.match(raw):
                # A login page, a proxy's error page or a parked domain: not an answer the
                # model should read out, and often a sign the URL is wrong.
                raise ToolError(f"{name} answered with an HTML page, not data")
        return self._answer(raw, complete, charset)

    def _byte_cap(self) -> int:
        # Read well past the limit, since pretty-printed JSON shrinks once compacted; a body
        # longer than this is never parsed, only cut and passed on as text.
        return max(self.definition.max_output_chars * 8, 1 << 16)

    def _answer(self, raw: bytes, complete: bool, charset: str) -> str:
        if not raw.strip():
            return EMPTY_ANSWER
        try:
            text = raw.decode(charset, errors="replace")
        except LookupError:  # an unknown charset name in Content-Type
            text = raw.decode("utf-8", errors="replace")
        if complete:
            with contextlib.suppress(ValueError):  # not JSON: the text goes as it is
                text = json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
        limit = self.definition.max_output_chars
        if len(text) > limit or not complete:
            text = text[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK
        return text


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> tuple[bytes, bool]:
    """At most `cap` bytes of the body, and whether that was all of it."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(1 << 14):
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            return b"".join(chunks)[:cap], False
    return b"".join(chunks), True


def load_webhook_tool(
    definition: ToolDefinition, environ: Mapping[str, str], client: WebhookClient
) -> WebhookTool:
    """Read the tool's secret now (a missing one stops the start) and mask it in all logs."""
    secret: bytes | None = None
    if definition.secret_env is not None:
        value = environ.get(definition.secret_env, "")
        if not value.strip():
            raise ConfigError(
                f"{definition.origin}: {definition.key('secret_env')} = "
                f"{definition.secret_env!r}: expected that environment variable to hold "
                "the webhook secret, but it is not set or empty"
            )
        register_secret(value)
        secret = value.encode("utf-8")
    for header, header_value in definition.headers.items():
        if _CREDENTIAL_HEADER.search(header):
            register_secret(header_value)
    return WebhookTool(definition, client, secret)
