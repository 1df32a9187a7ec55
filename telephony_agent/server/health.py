"""A minimal HTTP health endpoint for load balancers and orchestrators.

Why not a web framework: the only question asked here is "is this instance
alive and how full is it", answered in a few lines of asyncio streams with no
new dependency. `GET /health` returns JSON; everything else is 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from telephony_agent.server.sip_server import AgentSipServer

__all__ = ["HealthServer"]

_MAX_REQUEST_BYTES = 8192


class HealthServer:
    def __init__(self, sip: AgentSipServer) -> None:
        self._sip = sip
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def snapshot(self) -> dict[str, object]:
        stats = self._sip.stats
        lateness = self._sip.clock.lateness_stats()
        return {
            "status": "ok",
            "active_calls": self._sip.active_calls,
            "max_calls": self._sip.settings.sip.max_calls,
            "invites": stats.invites,
            "answered": stats.answered,
            "completed": stats.completed,
            "call_seconds": round(stats.call_seconds, 3),
            "rejected_busy": stats.rejected_busy,
            "sip_malformed_dropped": self._sip.endpoint.stats.malformed_dropped,
            "sip_bad_requests": self._sip.endpoint.stats.bad_requests_answered,
            "media_clock_lateness_p50_ms": round(lateness.p50_ms, 3),
            "media_clock_lateness_p99_ms": round(lateness.p99_ms, 3),
            "media_clock_skipped_ticks": self._sip.clock.skipped_ticks,
        }

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            writer.close()
            return
        line = head[:_MAX_REQUEST_BYTES].split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "GET" and parts[1].split("?")[0] == "/health":
            status, body = "200 OK", json.dumps(self.snapshot()).encode()
        else:
            status, body = "404 Not Found", b'{"error": "not found"}'
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()
