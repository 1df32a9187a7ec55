"""Python tools: `python = "package.module:function"` runs operator code in the agent's process.

Why import at start: a misspelt module or a function that does not exist should stop the
service with one line naming the key, not surface as a failed tool call in the middle of
a conversation. Plain functions run in a worker thread so a blocking database client
cannot freeze the audio of every call; coroutine functions are awaited on the loop.
A thread cannot be stopped, so a sync function that overruns its timeout keeps running
in the background while the model is told it did not answer.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from telephony_agent.call.tools import ToolError
from telephony_agent.errors import ConfigError
from telephony_agent.tools.context import CallInfo, ToolCallContext
from telephony_agent.tools.definitions import ToolDefinition

__all__ = ["PythonTool", "ToolCallContext", "load_python_tool"]

ToolFunction = Callable[[ToolCallContext, dict[str, Any]], Any]


class PythonTool:
    """One imported tool function, called as `function(context, arguments)`."""

    def __init__(self, definition: ToolDefinition, function: ToolFunction) -> None:
        self.definition = definition
        self.function = function

    def __repr__(self) -> str:
        return f"PythonTool({self.definition.name!r}, {self.definition.python!r})"

    async def __call__(self, arguments: Mapping[str, Any], call: CallInfo) -> str:
        """Run the function; its value as output text, or ToolError if it cannot be sent."""
        name = self.definition.name
        context = ToolCallContext(
            call_id=call.call_id,
            profile=call.profile,
            caller=call.caller,
            dialled=call.dialled,
            variables=call.variables,
            logger=structlog.get_logger(f"{__name__}.{name}").bind(call_id=call.call_id, tool=name),
        )
        args = dict(arguments)
        if inspect.iscoroutinefunction(self.function):
            value = await self.function(context, args)
        else:
            value = await asyncio.to_thread(self.function, context, args)
            if inspect.isawaitable(value):  # e.g. an object whose __call__ is async
                value = await value
        if isinstance(value, str):
            return value
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            raise ToolError(
                f"{name} returned a {type(value).__name__}, which cannot be sent as JSON"
            ) from None


def load_python_tool(definition: ToolDefinition) -> PythonTool:
    """Import the tool's function now; anything wrong is a one-line ConfigError."""
    target = definition.python
    if target is None:
        raise ValueError(f"{definition.name} is not a python tool")
    module_name, _, attribute_path = target.partition(":")

    def fail(reason: str) -> ConfigError:
        return ConfigError(
            f"{definition.origin}: {definition.key('python')} = {target!r}: {reason}"
        )

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if module_name == missing or module_name.startswith(missing + "."):
            raise fail(f"no module named {missing!r}") from None
        raise fail(f"importing {module_name} failed: no module named {missing!r}") from None
    except (Exception, SystemExit) as exc:
        raise fail(f"importing {module_name} raised {_one_line(exc)}") from None
    value: object = module
    for part in attribute_path.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise fail(f"{module_name} has no attribute {part!r}") from None
    if not callable(value):
        raise fail(f"{attribute_path} is a {type(value).__name__}, not a function")
    return PythonTool(definition, value)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 100:
        text = text[:97] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
