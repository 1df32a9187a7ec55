"""The asyncio shell around `RealtimeProtocol`: one websocket session per phone call.

Why a thin shell: every decision lives in the sans-I/O protocol; this module only
opens sockets, moves strings and supervises reconnects.

* Sending never blocks the caller: the sync methods put frames on a queue that a
  writer task drains. Uplink audio is dropped (and counted), never buffered without
  bound, while no session is live or when the writer falls behind.
* A reader task feeds received frames to the protocol and queues the typed events
  that `events()` yields.
* Opening the session raises `RealtimeAuthError` / `RealtimeProtocolError` /
  `RealtimeConfigError` at once and `RealtimeConnectError` after capped retries. A
  model the provider says does not exist (`RealtimeModelError`) is never retried: the
  endpoint's next model, if any (`Endpoint.alternates`), is tried at once instead.
  Once open, faults never raise out of `events()`: a lost connection is replaced
  (capped exponential backoff, `session.update` re-sent, a recap of the conversation
  replayed, `SessionReconnected` emitted), and when that is no longer possible
  `events()` yields `SessionClosed(reason)` and ends.
* Keepalive pings are sent, but a missing pong is not fatal: some providers do not
  answer pings, and hanging up on a live caller for that would be worse.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import structlog
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, WebSocketException

from telephony_agent.metrics import LatencySamples
from telephony_agent.realtime.errors import (
    RealtimeAuthError,
    RealtimeConfigError,
    RealtimeConnectError,
    RealtimeError,
    RealtimeModelError,
    RealtimeProtocolError,
)
from telephony_agent.realtime.events import (
    AudioDelta,
    ServerEvent,
    SessionClosed,
    SessionReconnected,
)
from telephony_agent.realtime.protocol import Fatal, RealtimeProtocol
from telephony_agent.realtime.providers import Endpoint
from telephony_agent.realtime.session_config import SessionConfig
from telephony_agent.realtime.websocket_open import CLOSE_TIMEOUT_S, open_websocket
from telephony_agent.realtime.websocket_open import Transient as _Transient

log = structlog.get_logger(__name__)

#: A connection that lived this long resets the reconnect streak.
STABLE_AFTER_S = 30.0
#: How long `close()` lets queued frames (a last function output) go out.
CLOSE_DRAIN_S = 0.5

State = Literal["new", "connecting", "open", "reconnecting", "closed"]


@dataclass(frozen=True)
class _LinkEnd:
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
class _Link:
    """One websocket connection and its two tasks."""

    ws: ClientConnection
    outgoing: asyncio.Queue[tuple[str, float]]
    created: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    opened_at: float = field(default_factory=time.monotonic)
    queued_audio: int = 0
    backlog_full: bool = False
    reader: asyncio.Task[_LinkEnd] | None = None
    writer: asyncio.Task[None] | None = None


class RealtimeSession:
    """One Realtime conversation, surviving websocket losses; see the module docstring."""

    def __init__(
        self,
        endpoint: Endpoint,
        config: SessionConfig,
        *,
        chunk_ms: int = 20,
        ready_timeout_s: float = 5.0,
        max_reconnects: int = 5,
        backoff_s: tuple[float, float] = (0.25, 4.0),
        connect_attempts: int = 3,
        open_timeout_s: float = 10.0,
        ping_interval_s: float | None = 20.0,
        recap_lines: int = 12,
        recap_role: str = "system",
        max_queued_audio_ms: int = 120_000,
    ) -> None:
        self.endpoint = endpoint
        self.config = config
        #: Capture (e.g. RTP arrival) to websocket write done, per uplink chunk.
        self.uplink_latency = LatencySamples()
        self.protocol = RealtimeProtocol(
            config,
            endpoint.dialect,
            chunk_ms=chunk_ms,
            recap_lines=recap_lines,
            recap_role=recap_role,
        )
        self._ready_timeout_s = ready_timeout_s
        self._max_reconnects = max(0, max_reconnects)
        self._backoff_s = backoff_s
        self._connect_attempts = max(1, connect_attempts)
        self._open_timeout_s = open_timeout_s
        self._ping_interval_s = ping_interval_s
        self._max_queued_audio = max(1, max_queued_audio_ms // chunk_ms)
        self._events: asyncio.Queue[ServerEvent] = asyncio.Queue()
        self._state: State = "new"
        self._link: _Link | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._closing = False
        self._where = f"{endpoint.name} ({endpoint.redacted_url()})"
        self._log = log.bind(provider=endpoint.name)

    # ------------------------------------------------------------------ properties

    @property
    def output_rate(self) -> int:
        """Rate of the audio deltas: from `session.updated`, else what we asked for."""
        return self.protocol.output_rate

    @property
    def input_rate(self) -> int:
        return self.protocol.input_rate

    @property
    def audio_format(self) -> str:
        """`pcm`, `pcmu` or `pcma` both ways, as agreed with the provider (after a G.711
        refusal this is `pcm`)."""
        return self.protocol.audio_format

    @property
    def state(self) -> State:
        return self._state

    @property
    def response_active(self) -> bool:
        return self.protocol.response_active

    @property
    def stats(self) -> dict[str, int]:
        """Counters: skipped frames, audio bytes sent and dropped, reconnects."""
        return dict(self.protocol.stats)

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Open the session; returns once it is ready (configured) to carry a call."""
        if self._state != "new":
            raise RuntimeError("RealtimeSession.connect() may be called only once")
        self._state = "connecting"
        candidates = (self.endpoint, *self.endpoint.alternates)
        missing: list[str] = []
        link: _Link | None = None
        for number, endpoint in enumerate(candidates, 1):
            self._use(endpoint)
            try:
                link = await self._open_link()
                break
            except RealtimeModelError as exc:
                missing.append(endpoint.model)
                if number == len(candidates):
                    tried = f" (tried {', '.join(missing)})" if len(missing) > 1 else ""
                    error = RealtimeModelError(f"{exc}{tried}")
                    self._finish(f"setup failed: {error}")
                    raise error from None
                self._log.warning(
                    "realtime_model_missing_trying_next",
                    model=endpoint.model,
                    next_model=candidates[number].model,
                )
            except RealtimeError as exc:
                self._finish(f"setup failed: {exc}")
                raise
            except BaseException:
                self._finish("setup interrupted")
                raise
        assert link is not None
        self._go_live(link)
        self._log.info(
            "realtime_session_ready",
            url=self.endpoint.redacted_url(),
            dialect=str(self.endpoint.dialect),
            output_rate=self.output_rate,
            audio_format=self.audio_format,
        )
        self._supervisor = asyncio.create_task(self._supervise(), name="realtime-supervisor")

    def _use(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._where = f"{endpoint.name} ({endpoint.redacted_url()})"

    async def _open_link(self) -> _Link:
        """A ready connection to the current endpoint; only transient failures are retried."""
        last: _Transient | None = None
        for attempt in range(1, self._connect_attempts + 1):
            try:
                return await self._establish()
            except _Transient as exc:
                last = exc
                self._log.warning("realtime_connect_failed", attempt=attempt, error=str(exc))
                if attempt < self._connect_attempts:
                    await asyncio.sleep(self._backoff(attempt))
        message = f"cannot reach {self._where} after {self._connect_attempts} attempts: {last}"
        self._finish(message)
        raise RealtimeConnectError(message)

    async def close(self) -> None:
        """End the session; `events()` yields `SessionClosed` and ends. Idempotent."""
        if self._state == "closed":
            await self._reap_background()
            return
        self._closing = True
        if self._supervisor is not None and self._supervisor is not asyncio.current_task():
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        link, self._link = self._link, None
        if link is not None:
            await self._shutdown(link, drain=True)
        await self._reap_background()
        self._finish("closed by client")

    async def _reap_background(self) -> None:
        """Connections being closed after a loss: give them up, wait for their tasks."""
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def events(self) -> AsyncIterator[ServerEvent]:
        """Server events in order; ends after yielding `SessionClosed`."""
        while True:
            if self._state == "closed" and self._events.empty():
                return
            event = await self._events.get()
            yield event
            if isinstance(event, SessionClosed):
                return

    # ------------------------------------------------------------------ sending

    def append_audio(self, pcm24k: bytes, captured_at: float = 0.0) -> None:
        """Queue uplink audio in the session's format (PCM16 at `config.input_rate`, or
        G.711 bytes); re-chunked to `chunk_ms` pieces.

        `captured_at` (``time.monotonic()`` when the audio reached us, e.g. the RTP
        packet's arrival) lets the session measure the bridge's uplink latency up to
        the moment the websocket write completes.
        """
        link = self._live()
        if link is None:
            self.protocol.stats["audio_bytes_dropped"] += len(pcm24k)
            return
        for frame in self.protocol.append_audio(pcm24k):
            if link.queued_audio >= self._max_queued_audio:
                if not link.backlog_full:
                    link.backlog_full = True
                    self._log.warning("realtime_uplink_backlog_full", queued=link.queued_audio)
                self.protocol.stats["audio_bytes_dropped"] += self.protocol.chunk_bytes
                self.protocol.stats["audio_chunks_dropped_backlog"] += 1
                continue
            self._enqueue(link, frame, audio=True, captured_at=captured_at)

    def commit(self) -> None:
        link = self._live()
        if link is None:
            self.protocol.drop_pending_audio()
            self._log.info("realtime_send_dropped", type="input_audio_buffer.commit")
            return
        for frame in self.protocol.commit():
            self._enqueue(link, frame)

    def create_response(self, instructions: str | None = None) -> None:
        """Ask for a response; queued (once) while one is active or while reconnecting."""
        link = self._live()
        if link is None:
            if self._state != "closed":
                self.protocol.defer_response(instructions)
            return
        frame = self.protocol.create_response(instructions)
        if frame is not None:
            self._enqueue(link, frame)

    def cancel_response(self) -> None:
        """Cancel the active response; nothing is sent when none is active."""
        link = self._live()
        frame = self.protocol.cancel_response() if link is not None else None
        if link is not None and frame is not None:
            self._enqueue(link, frame)

    def truncate(self, item_id: str, audio_end_ms: int) -> None:
        link = self._live()
        frame = self.protocol.truncate(item_id, audio_end_ms) if link is not None else None
        if link is not None and frame is not None:
            self._enqueue(link, frame)

    def send_function_output(self, call_id: str, output: str) -> None:
        link = self._live()
        if link is None:
            # The call belonged to a connection that is gone; the new one never saw it.
            self._log.warning("realtime_function_output_dropped", call_id=call_id)
            return
        self._enqueue(link, self.protocol.function_output(call_id, output))

    def add_message(self, role: str, text: str) -> None:
        """A text message item; while reconnecting it only joins the replayed recap."""
        frame = self.protocol.add_message(role, text)
        link = self._live()
        if link is not None:
            self._enqueue(link, frame)

    def _live(self) -> _Link | None:
        return self._link if self._state == "open" else None

    def _enqueue(
        self, link: _Link, frame: str, *, audio: bool = False, captured_at: float = 0.0
    ) -> None:
        """Queue one frame for the writer. Audio carries when it was captured (> 0),
        or -1.0 when the capture time is unknown; control frames carry 0.0."""
        if audio:
            link.queued_audio += 1
            link.outgoing.put_nowait((frame, captured_at if captured_at > 0 else -1.0))
        else:
            link.outgoing.put_nowait((frame, 0.0))

    # ------------------------------------------------------------------ connections

    async def _open(self) -> ClientConnection:
        """The websocket handshake, with every failure mapped to a key-free error."""
        return await open_websocket(
            self.endpoint,
            self._where,
            open_timeout_s=self._open_timeout_s,
            ping_interval_s=self._ping_interval_s,
        )

    async def _establish(self) -> _Link:
        """Open a websocket and complete the Realtime handshake on it."""
        ws = await self._open()
        self.protocol.connection_opened()
        link = _Link(ws=ws, outgoing=asyncio.Queue())
        link.reader = asyncio.create_task(self._read(link), name="realtime-reader")
        link.writer = asyncio.create_task(self._write(link), name="realtime-writer")
        try:
            await self._handshake(link)
        except BaseException:
            await self._shutdown(link, drain=False)
            raise
        return link

    async def _handshake(self, link: _Link) -> None:
        """session.created, then our session.update, then session.updated (or a timeout)."""
        if not await self._wait(link, link.created):
            raise RealtimeProtocolError(
                f"{self._where} accepted the websocket but sent no session.created within "
                f"{self._ready_timeout_s:g} s: not a Realtime endpoint?"
            )
        self._enqueue(link, self.protocol.session_update())
        if not await self._wait(link, link.ready):
            if self.protocol.force_ready():
                self._log.warning(
                    "realtime_session_updated_missing",
                    waited_s=self._ready_timeout_s,
                    note="continuing with the configuration we asked for",
                )
            link.ready.set()

    async def _wait(self, link: _Link, flag: asyncio.Event) -> bool:
        """Wait for `flag` up to the ready timeout; raise if the connection ends first."""
        assert link.reader is not None
        if not flag.is_set():
            waiter = asyncio.ensure_future(flag.wait())
            try:
                await asyncio.wait(
                    {waiter, link.reader},
                    timeout=self._ready_timeout_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                waiter.cancel()
        if flag.is_set():
            return True
        if link.reader.done():
            raise self._setup_error(link.reader)
        return False

    def _setup_error(self, reader: asyncio.Task[_LinkEnd]) -> Exception:
        if reader.cancelled() or reader.exception() is not None:
            return _Transient("the connection failed during setup")
        end = reader.result()
        fatal = self._fatal_error(end)
        return fatal if fatal is not None else _Transient(f"closed during setup ({end.describe()})")

    def _fatal_error(self, end: _LinkEnd) -> RealtimeError | None:
        """The error that must end the session, or None when a new connection may help."""
        if end.fatal is not None:
            kinds: Mapping[str, type[RealtimeError]] = {
                "auth": RealtimeAuthError,
                "protocol": RealtimeProtocolError,
                "config": RealtimeConfigError,
                "model": RealtimeModelError,
            }
            return kinds[end.fatal.kind](f"{self._where}: {end.fatal.message}")
        if end.code == 1008:
            return RealtimeAuthError(
                f"{self._where} closed the session with code 1008 (policy violation"
                f"{': ' + end.reason if end.reason else ''}): usually the API key or the "
                "model is not accepted"
            )
        if end.code == 4000 or "beta_api_shape_disabled" in end.reason:
            return RealtimeProtocolError(
                f"{self._where} closed the session with code {end.code} ({end.reason}): "
                "it does not accept this protocol shape; check the dialect"
            )
        return None

    def _go_live(self, link: _Link) -> None:
        self._link = link
        self._state = "open"
        for frame in self.protocol.resume_messages():
            self._enqueue(link, frame)

    async def _read(self, link: _Link) -> _LinkEnd:
        protocol = self.protocol
        try:
            async for frame in link.ws:
                received_at = time.monotonic()
                try:
                    events = protocol.feed(frame)
                except Exception:  # a parser bug must cost one frame, not the call
                    protocol.stats["frames_failed"] += 1
                    self._log.exception("realtime_frame_failed")
                    continue
                for event in events:
                    if type(event) is AudioDelta:
                        event = dataclasses.replace(event, received_at=received_at)
                    self._events.put_nowait(event)
                for out in protocol.take_outgoing():
                    self._enqueue(link, out)
                if protocol.session_created:
                    link.created.set()
                if protocol.ready:
                    link.ready.set()
                if protocol.fatal is not None:
                    return _LinkEnd(None, "", fatal=protocol.fatal)
                if protocol.expired:
                    return _LinkEnd(None, "session_expired", expired=True)
        except ConnectionClosed:
            pass
        return _LinkEnd(link.ws.close_code, link.ws.close_reason or "")

    async def _write(self, link: _Link) -> None:
        try:
            while True:
                frame, captured_at = await link.outgoing.get()
                if captured_at != 0.0:
                    link.queued_audio -= 1
                try:
                    await link.ws.send(frame)
                    if captured_at > 0.0:
                        self.uplink_latency.add(time.monotonic() - captured_at)
                finally:
                    link.outgoing.task_done()
        except ConnectionClosed:
            return
        except Exception as exc:  # never leave a half-dead link: the reader will notice
            self._log.error("realtime_writer_failed", error=type(exc).__name__)
            link.ws.transport.abort()

    async def _shutdown(self, link: _Link, *, drain: bool) -> None:
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

    # ------------------------------------------------------------------ supervision

    async def _supervise(self) -> None:
        """Watch the live connection; replace it when lost, end the session when not."""
        streak = 0
        while True:
            link = self._link
            if link is None or link.reader is None:
                return
            await asyncio.wait({link.reader})
            if self._closing:
                return
            if link.reader.cancelled() or link.reader.exception() is not None:
                end = _LinkEnd(None, "reader failed")
            else:
                end = link.reader.result()
            self._close_in_background(link)
            fatal = self._fatal_error(end)
            reconnect = fatal is None and self._max_reconnects > 0
            for event in self.protocol.connection_lost(
                "session_reconnected" if reconnect else "session_closed"
            ):
                self._events.put_nowait(event)
            if fatal is not None:
                self._log.error("realtime_session_failed", error=str(fatal))
                self._finish(str(fatal))
                return
            self._log.warning("realtime_connection_lost", why=end.describe())
            if not reconnect:
                self._finish(f"connection lost ({end.describe()})")
                return
            if time.monotonic() - link.opened_at >= STABLE_AFTER_S:
                streak = 0
            self._state = "reconnecting"
            self._link = None
            replacement: _Link | None = None
            last = end.describe()
            while replacement is None:
                streak += 1
                if streak > self._max_reconnects:
                    self._finish(
                        f"connection lost ({end.describe()}); gave up after "
                        f"{self._max_reconnects} reconnect attempts (last: {last})"
                    )
                    return
                if not (end.expired and streak == 1):
                    await asyncio.sleep(self._backoff(streak))
                try:
                    replacement = await self._establish()
                except _Transient as exc:
                    last = str(exc)
                    self._log.warning("realtime_reconnect_failed", attempt=streak, error=last)
                except RealtimeError as exc:
                    self._log.error("realtime_reconnect_refused", attempt=streak, error=str(exc))
                    self._finish(str(exc))
                    return
            self.protocol.stats["reconnects"] += 1
            self._go_live(replacement)
            self._log.info("realtime_session_reconnected", attempt=streak)
            self._events.put_nowait(SessionReconnected(streak))

    def _close_in_background(self, link: _Link) -> None:
        task = asyncio.create_task(self._shutdown(link, drain=False), name="realtime-close")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _finish(self, reason: str) -> None:
        """Enter the final state once: end anything in flight, then `SessionClosed`."""
        if self._state == "closed":
            return
        self._state = "closed"
        self._link = None
        for event in self.protocol.connection_lost("session_closed"):
            self._events.put_nowait(event)
        self._events.put_nowait(SessionClosed(reason))
        self._log.info("realtime_session_closed", reason=reason, **self.stats)

    def _backoff(self, attempt: int) -> float:
        base, cap = self._backoff_s
        delay: float = min(cap, base * 2 ** max(0, attempt - 1))
        return delay * (0.8 + 0.2 * random.random())
