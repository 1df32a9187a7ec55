"""Tools the model may call during a call, and the built-in telephony actions.

Why a registry of async callables: tool calls run concurrently with the audio, a
slow or failing tool must never stall or crash the call, and the model always gets
an output (an error object if need be) so the conversation can go on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from telephony_agent.realtime.session_config import ToolSpec

log = structlog.get_logger(__name__)


class ToolContext(Protocol):
    """What a tool may do to the call it runs in."""

    call_id: str

    def request_hangup(self, reason: str) -> None:
        """End the call once the agent's current speech has been played out."""

    async def transfer(self, target: str) -> bool:
        """Hand the caller to a human or another number."""

    def send_dtmf(self, digits: str) -> bool:
        """Send DTMF digits towards the caller's side (IVR navigation)."""


ToolHandler = Callable[[dict[str, Any], ToolContext], Awaitable[Any]]


@dataclass(frozen=True)
class Tool:
    spec: ToolSpec
    handler: ToolHandler
    timeout_s: float = 10.0


class ToolRegistry:
    """Named tools; `run` always returns a JSON string for `function_call_output`."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def register(self, tool: Tool) -> None:
        self._tools[tool.spec.name] = tool

    def specs(self) -> list[ToolSpec]:
        return [t.spec for t in self._tools.values()]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    async def run(self, name: str, arguments: str, ctx: ToolContext) -> str:
        tool = self._tools.get(name)
        if tool is None:
            log.warning("tool_unknown", tool=name)
            return json.dumps({"error": f"unknown tool {name!r}"})
        try:
            args = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            log.warning("tool_bad_arguments", tool=name, error=str(exc))
            return json.dumps({"error": f"arguments are not valid JSON: {exc.msg}"})
        if not isinstance(args, dict):
            return json.dumps({"error": "arguments must be a JSON object"})
        try:
            async with asyncio.timeout(tool.timeout_s):
                result = await tool.handler(args, ctx)
        except TimeoutError:
            log.warning("tool_timeout", tool=name, timeout_s=tool.timeout_s)
            return json.dumps({"error": f"{name} timed out"})
        except Exception as exc:  # a tool bug must not end the call
            log.exception("tool_failed", tool=name)
            return json.dumps({"error": f"{name} failed: {type(exc).__name__}"})
        log.info("tool_done", tool=name)
        return result if isinstance(result, str) else json.dumps(result)


async def _end_call(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    ctx.request_hangup(str(args.get("reason") or "agent_end_call"))
    return {"ok": True, "note": "the call ends after your last words have been played"}


async def _transfer_call(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    target = str(args.get("target") or "").strip()
    if not target:
        return {"ok": False, "error": "target is required"}
    ok = await ctx.transfer(target)
    return {"ok": ok} if ok else {"ok": False, "error": "transfer is not possible on this call"}


async def _send_dtmf(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    digits = str(args.get("digits") or "")
    if not digits or any(d not in "0123456789*#ABCD" for d in digits.upper()):
        return {"ok": False, "error": "digits must be 0-9, *, #, A-D"}
    return {"ok": ctx.send_dtmf(digits.upper())}


def builtin_tools() -> list[Tool]:
    """end_call, transfer_call and send_dtmf: the actions every phone agent needs."""
    return [
        Tool(
            ToolSpec(
                name="end_call",
                description="Hang up the phone call after saying goodbye.",
                parameters={
                    "type": "object",
                    "properties": {"reason": {"type": "string"}},
                    "additionalProperties": False,
                },
            ),
            _end_call,
        ),
        Tool(
            ToolSpec(
                name="transfer_call",
                description="Transfer the caller to a human operator or another number.",
                parameters={
                    "type": "object",
                    "properties": {
                        "target": {"type": "string", "description": "SIP URI or phone number"}
                    },
                    "required": ["target"],
                    "additionalProperties": False,
                },
            ),
            _transfer_call,
            timeout_s=30.0,
        ),
        Tool(
            ToolSpec(
                name="send_dtmf",
                description="Send touch-tone digits on the line.",
                parameters={
                    "type": "object",
                    "properties": {"digits": {"type": "string"}},
                    "required": ["digits"],
                    "additionalProperties": False,
                },
            ),
            _send_dtmf,
        ),
    ]


def default_registry() -> ToolRegistry:
    registry = ToolRegistry()
    for tool in builtin_tools():
        registry.register(tool)
    return registry
