"""Operator-defined business tools: `[[tools]]` tables that call a webhook or a Python function.

This package sits above `call/` (it builds `call.tools.Tool`s) and below the
switchboard. Only the light modules are re-exported here (definitions, the call
facts a tool sees), so `config.py` can parse `[[tools]]` without loading aiohttp.
Loading and binding live in `telephony_agent.tools.binding` (`BusinessTools`), the
transports in `tools.webhook` and `tools.python_tool`. Argument checking against a
tool's schema is `call/tool_arguments.py`: the registry applies it to built-ins too.
"""

from telephony_agent.tools.context import CallInfo, ToolCallContext
from telephony_agent.tools.definitions import (
    BUILTIN_TOOL_NAMES,
    ToolDefinition,
    parse_tool_tables,
)

__all__ = [
    "BUILTIN_TOOL_NAMES",
    "CallInfo",
    "ToolCallContext",
    "ToolDefinition",
    "parse_tool_tables",
]
