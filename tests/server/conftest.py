"""A real SIP server on loopback (real sockets, real local Realtime backend) per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from telephony_agent.commands.runtime import open_provider
from telephony_agent.config import load_settings
from telephony_agent.server.sip_server import AgentSipServer
from telephony_agent.switchboard import Switchboard

ServerFactory = Callable[..., AbstractAsyncContextManager[AgentSipServer]]


@asynccontextmanager
async def _running_server(**sections: dict[str, Any]) -> AsyncIterator[AgentSipServer]:
    overrides: dict[str, dict[str, Any]] = {
        "provider": {"name": "local"},
        "sip": {"listen": "127.0.0.1:0", "transports": "udp+tcp", "t1_ms": 100},
        "rtp": {"port_min": 21000, "port_max": 21999},
        "log": {"level": "warning"},
    }
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    settings = load_settings(None, environ={}, overrides=overrides)
    runtime = await open_provider(settings, environ={})
    board = Switchboard(runtime.deployment(settings, environ={}))
    server = AgentSipServer(board)
    try:
        await server.start()
        yield server
    finally:
        await server.shutdown(timeout_s=5.0)
        await board.close()
        await runtime.close()


@pytest.fixture
def sip_server() -> ServerFactory:
    """`async with sip_server(sip={...}, agent={...}) as server:` — sections override."""
    return _running_server
