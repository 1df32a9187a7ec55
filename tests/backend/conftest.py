"""The `start` fixture: local backends that are closed when the test ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from telephony_agent.realtime.backend import BackendOptions, RunningBackend, start_backend

from .backend_wire import FAST

Start = Callable[..., Awaitable[RunningBackend]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    running: list[RunningBackend] = []

    async def make(**options: Any) -> RunningBackend:
        options.setdefault("realtime_factor", FAST)
        backend = await start_backend(BackendOptions(**options))
        running.append(backend)
        return backend

    yield make
    for backend in running:
        await backend.close()
