"""One websocket connection of a Realtime session: opened, written to, closed.

Why its own module: a session outlives its connections (reconnects, rollovers), and
what one connection needs (the handshake with every failure mapped to a key-free
error, a writer task that never blocks the caller, a bounded close) does not depend on
the protocol riding on it. `client.py` keeps only the supervision of connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)
from websockets.protocol import State

from telephony_agent.metrics import LatencySamples
from telephony_agent.realtime.errors import (
    RealtimeAuthError,
    RealtimeConfigError,
    RealtimeError,
    RealtimeModelError,
    RealtimeProtocolError,
)
from telephony_agent.realtime.protocol import Fatal
from telephony_agent.realtime.providers import Endpoint
from telephony_agent.realtime.rollover import StandbyHandshake
from telephony_agent.realtime.wslog import websocket_logger

log = structlog.get_logger(__name__)

#: Largest frame accepted from the server (audio deltas are far smaller).
MAX_FRAME_BYTES = 16 * 2**20
#: How long a drained close lets queued frames (a last function output) go out.
CLOSE_DRAIN_S = 0.5
CLOSE_TIMEOUT_S = 2.0

_WS_LOGGER = websocket_logger("telephony_agent.realtime.websocket")


class Transient(Exception):
    """A failure worth retrying (network, 5xx, abnormal close); message is key-free."""


@dataclass(frozen=True)
class LinkEnd:
    """Why a connection's reader stopped."""

    code: int | None
    reason: str
    fatal: Fatal | None = None
    expired: bool = False

    def describe(self) -> str:
        if self.fatal is not None:
            return self.fatal.message
        if self.expired:
            return "session expired"
        detail = f" {self.reason}" if self.reason else ""
        return f"close code {self.code}{detail}"


@dataclass
class Link:
    """One websocket connection and its two tasks."""

    ws: ClientConnection
    outgoing: asyncio.Queue[tuple[str, float]]
    created: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    opened_at: float = field(default_factory=time.monotonic)
    queued_audio: int = 0
    backlog_full: bool = False
    reader: asyncio.Task[LinkEnd] | None = None
    writer: asyncio.Task[None] | None = None
    #: Opened ahead of a rollover: its handshake is read apart from the live call.
    standby: StandbyHandshake | None = None
    #: Replaced by a rollover: whatever it still receives belongs to no one.
    retired: bool = False

    def send_audio(self, frame: str, captured_at: float, latency: LatencySamples) -> None:
        """One append: written at once when nothing waits before it and the socket has
        taken everything so far, else queued for the writer like any other frame.

        Why: appends are 50 frames a second per call, and through the queue each one
        costs a future, a wake-up of the writer task and websockets' async send context,
        more than twice the cost of framing and writing it. Order is kept: the writer
        takes a frame off the queue only when it is about to write it, so an empty queue
        means nothing is waiting; a socket with unsent bytes (backpressure) is left to
        the writer, which waits for it to drain.
        """
        ws = self.ws
        if (
            self.outgoing.empty()
            and ws.protocol.state is State.OPEN
            and ws.transport.get_write_buffer_size() == 0
        ):
            ws.protocol.send_text(frame.encode())
            ws.send_data()
            if captured_at > 0.0:
                latency.add(time.monotonic() - captured_at)
            return
        self.enqueue(frame, audio=True, captured_at=captured_at)

    def enqueue(self, frame: str, *, audio: bool = False, captured_at: float = 0.0) -> None:
        """Queue one frame for the writer. Audio carries when it was captured (> 0),
        or -1.0 when the capture time is unknown; control frames carry 0.0."""
        if audio:
            self.queued_audio += 1
            self.outgoing.put_nowait((frame, captured_at if captured_at > 0 else -1.0))
        else:
            self.outgoing.put_nowait((frame, 0.0))


async def open_websocket(
    endpoint: Endpoint, where: str, *, open_timeout_s: float, ping_interval_s: float | None
) -> ClientConnection:
    """The websocket handshake, with every failure mapped to a key-free error."""
    try:
        return await connect(
            endpoint.url,
            additional_headers=dict(endpoint.headers),
            open_timeout=open_timeout_s,
            ping_interval=ping_interval_s,
            ping_timeout=None,
            close_timeout=CLOSE_TIMEOUT_S,
            max_size=MAX_FRAME_BYTES,
            compression=None,
            proxy=None,
            logger=_WS_LOGGER,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            raise RealtimeAuthError(
                f"{where} refused the credentials (HTTP {status} on the websocket "
                "upgrade): check the API key, its scope and the model name"
            ) from None
        if status in (408, 425, 429) or status >= 500:
            raise Transient(f"HTTP {status} on the websocket upgrade") from None
        raise RealtimeProtocolError(
            f"{where} answered HTTP {status} instead of upgrading to a websocket: "
            "not a Realtime endpoint (check the URL)"
        ) from None
    except InvalidURI:
        raise RealtimeProtocolError(f"{where}: not a valid ws:// or wss:// URL") from None
    except InvalidMessage as exc:
        if isinstance(exc.__cause__, EOFError | OSError):
            raise Transient("the server closed the connection during the handshake") from None
        raise RealtimeProtocolError(
            f"{where} did not answer with HTTP: not a websocket server (check the URL)"
        ) from None
    except InvalidHandshake as exc:
        raise RealtimeProtocolError(
            f"{where} failed the websocket handshake ({type(exc).__name__}): "
            "not a Realtime endpoint (check the URL)"
        ) from None
    except TimeoutError:
        raise Transient(f"no websocket after {open_timeout_s:g} s") from None
    except OSError as exc:
        raise Transient(f"{type(exc).__name__}: {exc.strerror or exc}") from None
    except WebSocketException as exc:
        raise RealtimeProtocolError(f"{where}: websocket error {type(exc).__name__}") from None


async def write_loop(link: Link, uplink_latency: LatencySamples) -> None:
    """Send queued frames in order; audio with a capture time feeds `uplink_latency`."""
    try:
        while True:
            frame, captured_at = await link.outgoing.get()
            if captured_at != 0.0:
                link.queued_audio -= 1
            try:
                await link.ws.send(frame)
                if captured_at > 0.0:
                    uplink_latency.add(time.monotonic() - captured_at)
            finally:
                link.outgoing.task_done()
    except ConnectionClosed:
        return
    except Exception as exc:  # never leave a half-dead link: the reader will notice
        log.error("realtime_writer_failed", error=type(exc).__name__)
        link.ws.transport.abort()


async def shutdown(link: Link, *, drain: bool) -> None:
    """Close one connection and stop its tasks (bounded in time)."""
    if drain and link.writer is not None and not link.writer.done():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(link.outgoing.join(), CLOSE_DRAIN_S)
    if link.writer is not None:
        link.writer.cancel()
    try:
        await asyncio.wait_for(link.ws.close(), CLOSE_TIMEOUT_S + 0.5)
    except (TimeoutError, OSError, WebSocketException):
        link.ws.transport.abort()
    for task in (link.reader, link.writer):
        if task is None:
            continue
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def wait_for_flag(link: Link, flag: asyncio.Event, timeout_s: float, where: str) -> bool:
    """Wait for `flag` up to `timeout_s`; raise the setup error if the connection ends first."""
    assert link.reader is not None
    if not flag.is_set():
        waiter = asyncio.ensure_future(flag.wait())
        try:
            await asyncio.wait(
                {waiter, link.reader}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
    if flag.is_set():
        return True
    if link.reader.done():
        raise setup_error(where, link.reader)
    return False


def setup_error(where: str, reader: asyncio.Task[LinkEnd]) -> Exception:
    """What a connection that ended during its handshake means: fatal, or worth a retry."""
    if reader.cancelled() or reader.exception() is not None:
        return Transient("the connection failed during setup")
    end = reader.result()
    fatal = fatal_error(where, end)
    return fatal if fatal is not None else Transient(f"closed during setup ({end.describe()})")


def fatal_error(where: str, end: LinkEnd) -> RealtimeError | None:
    """The error that must end the session, or None when a new connection may help."""
    if end.fatal is not None:
        kinds: Mapping[str, type[RealtimeError]] = {
            "auth": RealtimeAuthError,
            "protocol": RealtimeProtocolError,
            "config": RealtimeConfigError,
            "model": RealtimeModelError,
        }
        return kinds[end.fatal.kind](f"{where}: {end.fatal.message}")
    if end.code == 1008:
        return RealtimeAuthError(
            f"{where} closed the session with code 1008 (policy violation"
            f"{': ' + end.reason if end.reason else ''}): usually the API key or the "
            "model is not accepted"
        )
    if end.code == 4000 or "beta_api_shape_disabled" in end.reason:
        return RealtimeProtocolError(
            f"{where} closed the session with code {end.code} ({end.reason}): "
            "it does not accept this protocol shape; check the dialect"
        )
    return None
