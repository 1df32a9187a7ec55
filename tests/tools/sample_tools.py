"""Small Python tools that the tests load by `python = "tests.tools.sample_tools:…"`."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from telephony_agent.demo_tools.booking import check_availability
from telephony_agent.tools import ToolCallContext

#: Set by `sleepy` once it has slept, so a test can wait for its abandoned thread.
sleepy_done = threading.Event()
NOT_A_FUNCTION = 42


def lookup_room(context: ToolCallContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """A sync tool: echoes what it was given and which thread ran it."""
    context.logger.info("room_lookup", nights=arguments.get("nights"))
    return {
        "room": 12,
        "nights": arguments.get("nights"),
        "call_id": context.call_id,
        "profile": context.profile,
        "caller": context.caller,
        "dialled": context.dialled,
        "variables": dict(context.variables),
        "thread": threading.current_thread().name,
    }


async def async_lookup(context: ToolCallContext, arguments: dict[str, Any]) -> str:
    """A coroutine tool returning plain text."""
    await asyncio.sleep(0)
    return f"free rooms for {context.caller}: 3"


def broken(context: ToolCallContext, arguments: dict[str, Any]) -> str:
    """A tool with a bug."""
    raise RuntimeError("database password is hunter2")


def sleepy(context: ToolCallContext, arguments: dict[str, Any]) -> str:
    """A sync tool that overruns any short timeout."""
    time.sleep(float(arguments.get("seconds", 1.0)))
    sleepy_done.set()
    return "late"


async def async_sleepy(context: ToolCallContext, arguments: dict[str, Any]) -> str:
    """A coroutine tool that overruns any short timeout (and can be cancelled)."""
    await asyncio.sleep(float(arguments.get("seconds", 1.0)))
    return "late"


def not_serialisable(context: ToolCallContext, arguments: dict[str, Any]) -> object:
    """Returns something JSON cannot carry."""
    return {"when": object()}


def try_to_change_variables(context: ToolCallContext, arguments: dict[str, Any]) -> str:
    """Tries to write to the read-only variables."""
    try:
        context.variables["hotel"] = "changed"  # type: ignore[index]
    except TypeError:
        return "read-only"
    return "changed"


async def slow_check_availability(
    context: ToolCallContext, arguments: dict[str, Any]
) -> dict[str, Any]:
    """The demo restaurant's check, answered after 3.5 s (a slow back end)."""
    await asyncio.sleep(3.5)
    return check_availability(context, arguments)
