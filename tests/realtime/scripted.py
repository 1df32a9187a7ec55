"""Tiny scripted servers on 127.0.0.1 for the client shell tests.

`ScriptedServer` runs a coroutine per accepted websocket connection (a "script") and
records every client event it receives. `RawServer` answers the TCP connection with
whatever bytes a test wants (plain HTTP, garbage, a hand-made websocket that never
answers pings).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import struct
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.utils import accept_key

from telephony_agent.realtime.dialect import Dialect
from telephony_agent.realtime.providers import Endpoint

Script = Callable[["Peer"], Awaitable[None]]


class _Quiet(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The test server must not log request headers (they carry the test key) at debug."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


_QUIET = _Quiet(logging.getLogger("tests.scripted"), {})

GA_SESSION: dict[str, Any] = {
    "type": "realtime",
    "object": "realtime.session",
    "id": "sess_1",
    "audio": {
        "input": {"format": {"type": "audio/pcm", "rate": 24000}},
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
    },
}


class Peer:
    """The server side of one connection: send events, await client events."""

    def __init__(self, ws: ServerConnection, index: int) -> None:
        self.ws = ws
        self.index = index
        self.received: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                obj = json.loads(message)
                async with self._arrived:
                    self.received.append(obj)
                    self._arrived.notify_all()

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def expect(self, kind: str, within: float = 3.0, nth: int = 1) -> dict[str, Any]:
        """The `nth` received client event of type `kind` (waits for it)."""

        def found() -> list[dict[str, Any]]:
            return [e for e in self.received if e.get("type") == kind]

        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(found()) >= nth)
        return found()[nth - 1]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.received if e.get("type") == kind]

    async def handshake(self, *, output_rate: int = 24000, updated: bool = True) -> None:
        await self.send({"type": "session.created", "event_id": "s1", "session": GA_SESSION})
        await self.expect("session.update")
        if updated:
            session = json.loads(json.dumps(GA_SESSION))
            session["audio"]["output"]["format"]["rate"] = output_rate
            await self.send({"type": "session.updated", "event_id": "s2", "session": session})

    async def start_response(self, response_id: str, item_id: str, audio: bytes = b"") -> None:
        await self.send(
            {"type": "response.created", "response": {"id": response_id, "status": "in_progress"}}
        )
        if audio:
            await self.send(
                {
                    "type": "response.output_audio.delta",
                    "response_id": response_id,
                    "item_id": item_id,
                    "delta": base64.b64encode(audio).decode(),
                }
            )

    async def finish_response(self, response_id: str, text: str, item_id: str) -> None:
        await self.send(
            {
                "type": "response.output_audio_transcript.done",
                "response_id": response_id,
                "item_id": item_id,
                "transcript": text,
            }
        )
        await self.send(
            {"type": "response.done", "response": {"id": response_id, "status": "completed"}}
        )

    async def hold(self) -> None:
        """Keep the connection open until the client closes it."""
        await self.ws.wait_closed()


class ScriptedServer:
    """websockets server running `scripts[i]` for the i-th connection (last one repeats)."""

    def __init__(self, *scripts: Script, reject_status: int | None = None) -> None:
        self.scripts = scripts
        self.reject_status = reject_status
        self.attempts = 0
        self.request_headers: list[Headers] = []
        self.peers: list[Peer] = []
        self._server: Server | None = None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.attempts += 1
        self.request_headers.append(request.headers)
        if self.reject_status is not None:
            return connection.respond(HTTPStatus(self.reject_status), "nope\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        peer = Peer(ws, len(self.peers))
        self.peers.append(peer)
        script = self.scripts[min(peer.index, len(self.scripts) - 1)]
        try:
            await script(peer)
        finally:
            peer._reader.cancel()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def endpoint(self, headers: dict[str, str] | None = None, query: str = "") -> Endpoint:
        return Endpoint(
            url=f"ws://127.0.0.1:{self.port}/v1/realtime{query}",
            headers=headers or {},
            dialect=Dialect.GA,
            name="scripted",
        )

    async def __aenter__(self) -> ScriptedServer:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            ping_interval=None,
            compression=None,
            logger=_QUIET,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A plain asyncio TCP server on 127.0.0.1 for peers that are not websocket servers."""

    def __init__(self, handler: RawHandler) -> None:
        self.handler = handler
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away: that is what several tests provoke
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


async def read_http_request(reader: asyncio.StreamReader) -> dict[str, str]:
    """Headers of one HTTP request (lower-cased names)."""
    head = await reader.readuntil(b"\r\n\r\n")
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return headers


def server_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked server→client frame."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


async def read_client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(opcode, unmasked payload) of one client→server frame."""
    b1, b2 = await reader.readexactly(2)
    n = b2 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    mask = await reader.readexactly(4) if b2 & 0x80 else b""
    payload = await reader.readexactly(n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return b1 & 0x0F, payload


def upgrade_response(headers: dict[str, str]) -> bytes:
    accept = accept_key(headers["sec-websocket-key"])
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ).encode()


def text_frame(text: str) -> bytes:
    return server_frame(0x1, text.encode())
