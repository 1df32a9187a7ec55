"""The asyncio websocket shell around `BackendSession`.

Per connection: the handler task reads frames into the session, and one sender task
polls the session and writes what is due, sleeping until the next paced frame or the
next client event. Everything protocol-shaped lives in the session; this module only
does the upgrade (API key check, `?model=`), the socket, and the ping fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from telephony_agent.realtime.backend.behaviours import ScriptTurn, load_script
from telephony_agent.realtime.backend.continuous import ContinuousSession
from telephony_agent.realtime.backend.faults import SharedFaults
from telephony_agent.realtime.backend.options import BackendOptions
from telephony_agent.realtime.backend.outbox import CloseConnection
from telephony_agent.realtime.backend.phrases import booking_phrases
from telephony_agent.realtime.backend.session import BackendSession
from telephony_agent.realtime.backend.stats import BackendStats
from telephony_agent.realtime.wslog import websocket_logger

log = structlog.get_logger(__name__)

MAX_MESSAGE_BYTES = 16 * 2**20
"""One append may carry up to 15 MiB of base64 on the real service."""
DEFAULT_MODEL = "gpt-realtime"
_AUTH_SCHEMES = frozenset({"bearer", "api-key"})


class PingDeafConnection(ServerConnection):
    """A server connection that never answers pings (conformance case 10).

    websockets answers a PING inside its sans-I/O protocol (`Protocol.recv_frame`
    queues the PONG), before any connection-level hook runs, so the only clean seam is
    that method of this connection's own protocol object: PING frames are dropped there
    and every other frame takes the normal path.
    """

    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        self.stats: BackendStats | None = None
        """Set by the handler so ignored pings are counted live."""
        deliver = protocol.recv_frame

        def recv_frame(frame: WsFrame) -> None:
            if frame.opcode is Opcode.PING:
                if self.stats is not None:
                    self.stats.pings_ignored += 1
                return
            deliver(frame)

        protocol.recv_frame = recv_frame  # type: ignore[method-assign]
        super().__init__(protocol, *args, **kwargs)


def authorised(header: str | None, key: str) -> bool:
    """`Bearer k`, `Api-Key k` or `api-key k`; constant-time comparison of the key."""
    if header is None:
        return False
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() not in _AUTH_SCHEMES:
        return False
    return hmac.compare_digest(token.strip().encode(), key.encode())


def model_from_path(path: str) -> str:
    values = parse_qs(urlsplit(path).query).get("model")
    return values[0] if values and values[0] else DEFAULT_MODEL


@dataclass
class RunningBackend:
    """A listening backend; `url` is what a client connects to."""

    server: Server
    host: str
    port: int
    options: BackendOptions
    stats: BackendStats = field(default_factory=BackendStats)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/v1/realtime"

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()
        log.info("local_backend_stopped", port=self.port, **self.stats.snapshot())

    async def __aenter__(self) -> RunningBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Handler:
    """Per-backend connection handler; owns the options, loaded script and stats."""

    def __init__(
        self, options: BackendOptions, stats: BackendStats, script: tuple[ScriptTurn, ...] | None
    ) -> None:
        self.options = options
        self.stats = stats
        self.script = script
        self.shared = SharedFaults()

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        key = self.options.require_api_key
        if key is None or authorised(request.headers.get("Authorization"), key):
            return None
        self.stats.rejected_handshakes += 1
        log.info("local_backend_unauthorised", path=urlsplit(request.path).path)
        body = {
            "error": {
                "type": "invalid_request_error",
                "code": "invalid_api_key",
                "message": "Incorrect API key provided.",
                "param": None,
            }
        }
        response = connection.respond(401, json.dumps(body) + "\n")
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    async def __call__(self, connection: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        request = connection.request
        model = model_from_path(request.path) if request is not None else DEFAULT_MODEL
        session = self._new_session(model, loop)
        self.stats.connections += 1
        if isinstance(connection, PingDeafConnection):
            connection.stats = self.stats
        self.stats.open_connections += 1
        log.info("local_backend_connected", model=model, dialect=self.options.dialect)
        if self.options.session_start_delay_s > 0:
            # A slow provider: nothing (not even session.created) until the delay is over.
            await asyncio.sleep(self.options.session_start_delay_s)
        wake = asyncio.Event()
        session.start(loop.time())
        sender = asyncio.create_task(self._send_loop(connection, session, wake))
        try:
            async for message in connection:
                if isinstance(message, str):
                    session.receive_text(message)
                else:
                    session.receive_binary(message)
                wake.set()
        except ConnectionClosed:
            pass
        except Exception:
            # A backend bug must look like a provider fault (1011), not a hung socket.
            log.exception("local_backend_session_failed", model=model)
            await connection.close(1011, "internal error")
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            self.stats.open_connections -= 1
            log.info(
                "local_backend_disconnected",
                model=model,
                close_code=connection.close_code,
            )

    def _new_session(self, model: str, loop: asyncio.AbstractEventLoop) -> BackendSession:
        common: dict[str, Any] = {
            "model": model,
            "script": self.script,
            "unix_time": int(time.time()),
            "shared": self.shared,
        }
        if self.options.behaviour == "continuous":
            return ContinuousSession(self.options, self.stats, clock=loop.time, **common)
        return BackendSession(self.options, self.stats, **common)

    async def _send_loop(
        self, connection: ServerConnection, session: BackendSession, wake: asyncio.Event
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                wake.clear()
                frames, deadline = session.poll(loop.time())
                for frame in frames:
                    if isinstance(frame, CloseConnection):
                        await connection.close(frame.code, frame.reason)
                        return
                    await connection.send(frame)
                if frames:
                    continue  # sending took time: more may be due already
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await wake.wait()
        except ConnectionClosed:
            return
        except Exception:
            log.exception("local_backend_sender_failed")
            await connection.close(1011, "internal error")


async def start_backend(
    options: BackendOptions, host: str = "127.0.0.1", port: int = 0
) -> RunningBackend:
    """Listen on host:port (0 = any free port) and return once accepting connections."""
    script = load_script(options.script_path) if options.script_path is not None else None
    if options.behaviour == "script" and script is None:
        raise ValueError("behaviour 'script' needs script_path")
    if options.behaviour == "booking":
        booking_phrases()  # missing speech assets fail here, not on every connection
    stats = BackendStats()
    handler = _Handler(options, stats, script)
    server = await serve(
        handler,
        host,
        port,
        process_request=handler.process_request,
        create_connection=PingDeafConnection if options.ignore_pings else None,
        compression=None,
        max_size=MAX_MESSAGE_BYTES,
        ping_interval=None,
        logger=websocket_logger("telephony_agent.realtime.backend.websocket"),
    )
    bound = server.sockets[0].getsockname()[1] if server.sockets else port
    running = RunningBackend(server, host, int(bound), options, stats)
    log.info("local_backend_listening", url=running.url, behaviour=options.behaviour)
    return running


async def serve_forever(options: BackendOptions, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run until cancelled (the CLI's `local-backend` command)."""
    running = await start_backend(options, host, port)
    try:
        await running.server.serve_forever()
    finally:
        await running.close()
