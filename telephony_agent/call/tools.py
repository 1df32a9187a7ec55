"""Tools the model may call during a call, and the built-in telephony actions.

Why a registry of async callables: tool calls run concurrently with the audio, a
slow or failing tool must never stall or crash the call, and the model always gets
an output (an error object if need be) so the conversation can go on. Arguments are
checked against the tool's JSON Schema before any handler runs, and every invocation
becomes a `ToolResult` that a call record can keep.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from telephony_agent.call.tool_arguments import (
    ArgumentsError,
    ArgumentValidator,
    parse_arguments,
    validator_for,
)
from telephony_agent.media.leg import TransferResult
from telephony_agent.realtime.session_config import ToolSpec

log = structlog.get_logger(__name__)


class ToolContext(Protocol):
    """What a tool may do to the call it runs in."""

    call_id: str

    def request_hangup(self, reason: str) -> None:
        """End the call once the agent's current speech has been played out."""

    async def transfer(self, target: str) -> TransferResult:
        """Hand the caller to a human or another number; the result says how it went."""

    def send_dtmf(self, digits: str) -> bool:
        """Send DTMF digits towards the caller's side (IVR navigation)."""


ToolHandler = Callable[[dict[str, Any], ToolContext], Awaitable[Any]]


@dataclass(frozen=True)
class Tool:
    spec: ToolSpec
    handler: ToolHandler
    timeout_s: float = 10.0


class ToolError(Exception):
    """A handler could not do its job; the message is what the model is told.

    Raised instead of returning an error object so the registry records the call as
    failed. The message is also logged, so it must hold neither caller data nor secrets.
    """


@dataclass(frozen=True)
class ToolResult:
    """One tool invocation, as the model saw it and as a call record may store it."""

    name: str
    #: The arguments exactly as the model sent them (JSON text).
    arguments: str
    #: What was given to the model as `function_call_output`.
    output: str
    ok: bool
    #: Why it failed, short and without caller data; None when ok.
    error: str | None
    duration_ms: float
    #: Wall-clock start (`time.time()`).
    started_at: float


def _error_output(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


class ToolRegistry:
    """Named tools; `invoke` always yields an output for `function_call_output`."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._validators: dict[str, ArgumentValidator] = {}

    def register(self, tool: Tool) -> None:
        self._tools[tool.spec.name] = tool
        self._validators.pop(tool.spec.name, None)

    def specs(self) -> list[ToolSpec]:
        return [t.spec for t in self._tools.values()]

    def names(self) -> tuple[str, ...]:
        return tuple(self._tools)

    def copy(self) -> ToolRegistry:
        """A shallow copy: a per-call registry can add tools without touching a shared one."""
        other = ToolRegistry()
        other._tools = dict(self._tools)
        other._validators = dict(self._validators)
        return other

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    async def run(self, name: str, arguments: str, ctx: ToolContext) -> str:
        """The output text only (what the model is sent)."""
        return (await self.invoke(name, arguments, ctx)).output

    async def invoke(self, name: str, arguments: str, ctx: ToolContext) -> ToolResult:
        """Check the arguments, run the tool under its timeout, and never raise."""
        started_at = time.time()
        began = time.perf_counter()
        output, error = await self._outcome(name, arguments, ctx)
        result = ToolResult(
            name=name,
            arguments=arguments,
            output=output,
            ok=error is None,
            error=error,
            duration_ms=(time.perf_counter() - began) * 1000,
            started_at=started_at,
        )
        # The arguments may hold a caller's personal data: their values only at debug.
        log.debug("tool_call_detail", tool=name, arguments=arguments, output=output)
        (log.info if result.ok else log.warning)(
            "tool_call",
            tool=name,
            ok=result.ok,
            duration_ms=round(result.duration_ms, 1),
            error=error,
        )
        return result

    async def _outcome(self, name: str, arguments: str, ctx: ToolContext) -> tuple[str, str | None]:
        tool = self._tools.get(name)
        if tool is None:
            return _error_output(f"unknown tool {name!r}"), "unknown tool"
        try:
            args = self._validator(tool).check(parse_arguments(arguments))
        except ArgumentsError as exc:
            return _error_output(str(exc)), exc.summary
        except Exception as exc:  # a registered schema that jsonschema cannot apply
            log.debug("tool_schema_failed", tool=name, exc_info=True)
            return _error_output(f"{name} failed"), f"schema not applicable ({type(exc).__name__})"
        try:
            async with asyncio.timeout(tool.timeout_s):
                value = await tool.handler(args, ctx)
        except TimeoutError:
            message = f"{name} did not answer in {tool.timeout_s:g} s"
            return _error_output(message), message
        except ToolError as exc:
            return _error_output(str(exc)), str(exc)
        except Exception as exc:  # a tool bug must not end the call
            log.debug("tool_exception", tool=name, exc_info=True)
            return _error_output(f"{name} failed"), f"raised {type(exc).__name__}"
        if isinstance(value, str):
            return value, None
        try:
            return json.dumps(value, ensure_ascii=False, allow_nan=False), None
        except (TypeError, ValueError):
            message = f"{name} returned a value that is not JSON"
            return _error_output(message), message

    def _validator(self, tool: Tool) -> ArgumentValidator:
        validator = self._validators.get(tool.spec.name)
        if validator is None:
            validator = validator_for(tool.spec.parameters)
            self._validators[tool.spec.name] = validator
        return validator


async def _end_call(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    ctx.request_hangup(str(args.get("reason") or "agent_end_call"))
    return {"ok": True, "note": "the call ends after your last words have been played"}


#: Transfer failure reasons as a model can repeat them to the caller.
_SAYABLE = {
    "busy": "the line is busy",
    "declined": "the call was declined",
    "not_found": "that number does not exist",
    "no_answer": "nobody answered",
    "unavailable": "the line is unavailable",
    "refer_not_supported": "the phone system cannot transfer calls",
    "no_outcome": "the phone system did not say whether it worked",
    "refer_unanswered": "the phone system did not answer the transfer request",
}


async def _transfer_call(
    args: dict[str, Any], ctx: ToolContext, targets: Mapping[str, str] | None = None
) -> dict[str, Any]:
    target = str(args.get("target") or "").strip()
    if not target:
        return {"ok": False, "error": "target is required"}
    if targets:
        if target not in targets:
            names = ", ".join(sorted(targets))
            return {"ok": False, "error": f"unknown target; the choices are: {names}"}
        target = targets[target]
    result = await ctx.transfer(target)
    if result.ok:
        # A bridge: the agent leaves now, the caller is already talking to the target.
        return {"ok": True} if result.mode == "refer" else {"ok": True, "mode": result.mode}
    if result.reason == "not_supported":
        return {"ok": False, "error": "transfer is not possible on this call"}
    output: dict[str, Any] = {
        "ok": False,
        "error": f"the transfer to {target} failed: {_SAYABLE.get(result.reason, result.reason)}",
    }
    if result.message:
        # The profile's fallback: tell the caller how to get there, then hang up.
        output["instructions"] = (
            f"Tell the caller exactly this: {result.message} Then end the call with end_call."
        )
    return output


async def _send_dtmf(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    digits = str(args.get("digits") or "")
    if not digits or any(d not in "0123456789*#ABCD" for d in digits.upper()):
        return {"ok": False, "error": "digits must be 0-9, *, #, A-D"}
    return {"ok": ctx.send_dtmf(digits.upper())}


def builtin_tools(transfer_targets: Mapping[str, str] | None = None) -> list[Tool]:
    """end_call, transfer_call and send_dtmf: the actions every phone agent needs.

    With `transfer_targets`, transfer_call takes one of their names (an enum the model
    sees) and nothing else: the model cannot send a caller to a number it made up.
    """
    targets = dict(transfer_targets or {})
    target_schema: dict[str, Any] = {"type": "string", "description": "SIP URI or phone number"}
    transfer_handler: Callable[[dict[str, Any], ToolContext], Awaitable[dict[str, Any]]] = (
        _transfer_call
    )
    if targets:
        target_schema = {
            "type": "string",
            "enum": sorted(targets),
            "description": "who to transfer the caller to",
        }

        async def transfer_handler(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
            return await _transfer_call(args, ctx, targets)

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
                    "properties": {"target": target_schema},
                    "required": ["target"],
                    "additionalProperties": False,
                },
            ),
            transfer_handler,
            # REFER answer (10 s) plus its outcome or a bridge's ring time (30 s each).
            timeout_s=45.0,
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
