"""The asyncio shell around `RealtimeProtocol`: one websocket session per phone call.

Why a thin shell: every decision lives in the sans-I/O protocol; this module only
opens sockets, moves strings and supervises reconnects.

* Sending never blocks the caller: the sync methods put frames on a queue that a
  writer task drains. Uplink audio is never buffered without bound: between
  connections it is kept (up to `replay_max_ms`) for the next one, and it is dropped
  (and counted) when the writer falls behind.
* A reader task feeds received frames to the protocol and queues the typed events
  that `events()` yields.
* Opening the session raises `RealtimeAuthError` / `RealtimeProtocolError` /
  `RealtimeConfigError` at once and `RealtimeConnectError` after capped retries.
  Once open, faults never raise out of `events()`: a lost connection is replaced
  (capped exponential backoff, `session.update` re-sent, the recap and the caller's
  unanswered audio replayed, see `continuity.py`; `SessionReconnected` emitted), and
  when that is no longer possible `events()` yields `SessionClosed(reason)` and ends.
* With `max_session_s`, a connection is replaced before the provider's lifetime limit:
  the next one is opened ahead and the call switched to it at a pause
  (`rollover.py`), so the caller hears nothing.
* Keepalive pings are sent, but a missing pong is not fatal: some providers do not
  answer pings, and hanging up on a live caller for that would be worse.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Literal

import structlog
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from telephony_agent.metrics import LatencySamples
from telephony_agent.realtime.errors import (
    RealtimeConnectError,
    RealtimeError,
    RealtimeModelError,
    RealtimeProtocolError,
)
from telephony_agent.realtime.events import (
    LINK_LOST,
    AudioDelta,
    ServerEvent,
    SessionClosed,
    SessionReconnected,
)
from telephony_agent.realtime.link import (
    Link,
    LinkEnd,
    Transient,
    fatal_error,
    open_websocket,
    setup_error,
    shutdown,
    wait_for_flag,
    write_loop,
)
from telephony_agent.realtime.protocol import RealtimeProtocol
from telephony_agent.realtime.providers import Endpoint
from telephony_agent.realtime.rollover import RolloverPolicy, StandbyHandshake
from telephony_agent.realtime.session_config import SessionConfig

log = structlog.get_logger(__name__)

#: A connection that lived this long resets the reconnect streak.
STABLE_AFTER_S = 30.0
#: A standby connection that could not be opened is tried again after this long.
STANDBY_RETRY_S = 5.0
#: At most this long for the consumer to handle a lost connection's last events.
CONSUMER_WAIT_S = 0.5

State = Literal["new", "connecting", "open", "reconnecting", "closed"]


def _nothing_playing() -> bool:
    return False


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
        max_session_s: float | None = None,
        replay_max_ms: int = 15_000,
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
            replay_max_ms=replay_max_ms,
        )
        self._rollover = RolloverPolicy(max_session_s) if max_session_s else None
        self._standby: Link | None = None
        self._standby_retry_at = 0.0
        self._agent_playing: Callable[[], bool] = _nothing_playing
        self._ready_timeout_s = ready_timeout_s
        self._max_reconnects = max(0, max_reconnects)
        self._backoff_s = backoff_s
        self._connect_attempts = max(1, connect_attempts)
        self._open_timeout_s = open_timeout_s
        self._ping_interval_s = ping_interval_s
        self._max_queued_audio = max(1, max_queued_audio_ms // chunk_ms)
        self._events: asyncio.Queue[ServerEvent] = asyncio.Queue()
        self._state: State = "new"
        self._link: Link | None = None
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
    def audio_format(self) -> str:
        """`pcm`, `pcmu` or `pcma` both ways, as agreed with the provider (after a G.711
        refusal this is `pcm`)."""
        return self.protocol.audio_format

    @property
    def input_rate(self) -> int:
        return self.protocol.input_rate

    @property
    def state(self) -> State:
        return self._state

    @property
    def response_active(self) -> bool:
        return self.protocol.response_active

    @property
    def stats(self) -> dict[str, int]:
        """Counters: skipped frames, audio bytes sent, held and dropped, reconnects."""
        return dict(self.protocol.stats)

    def watch_playout(self, playing: Callable[[], bool]) -> None:
        """How to tell whether the caller is still hearing agent audio: a rollover waits
        for a pause, and a pause includes the agent's queued speech having played."""
        self._agent_playing = playing

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Open the session; returns once it is ready (configured) to carry a call."""
        if self._state != "new":
            raise RuntimeError("RealtimeSession.connect() may be called only once")
        self._state = "connecting"
        candidates = (self.endpoint, *self.endpoint.alternates)
        missing: list[str] = []
        link: Link | None = None
        for number, endpoint in enumerate(candidates, 1):
            self._use(endpoint)
            try:
                link = await self._open_link()
                break
            except RealtimeModelError as exc:
                # A model the provider does not have is never retried: the next one is.
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
        self._go_live(link, first=True)
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

    async def _open_link(self) -> Link:
        """A ready connection to the current endpoint; only transient failures are retried."""
        last: Transient | None = None
        for attempt in range(1, self._connect_attempts + 1):
            try:
                return await self._establish()
            except Transient as exc:
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
            await shutdown(link, drain=True)
        standby, self._standby = self._standby, None
        if standby is not None:
            await shutdown(standby, drain=False)
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
            try:
                yield event
            finally:
                self._events.task_done()  # the consumer has handled it
            if isinstance(event, SessionClosed):
                return

    # ------------------------------------------------------------------ sending

    def append_audio(self, pcm24k: bytes, captured_at: float = 0.0) -> None:
        """Queue uplink PCM16 at `config.input_rate`; re-chunked to `chunk_ms` pieces.

        `captured_at` (``time.monotonic()`` when the audio reached us, e.g. the RTP
        packet's arrival) lets the session measure the bridge's uplink latency up to
        the moment the websocket write completes.
        """
        link = self._live()
        if link is None:
            # Between connections the audio is kept for the next one (bounded).
            if self._state == "closed":
                self.protocol.stats["audio_bytes_dropped"] += len(pcm24k)
            else:
                self.protocol.hold_audio(pcm24k)
            return
        for frame in self.protocol.append_audio(pcm24k):
            if link.queued_audio >= self._max_queued_audio:
                if not link.backlog_full:
                    link.backlog_full = True
                    self._log.warning("realtime_uplink_backlog_full", queued=link.queued_audio)
                self.protocol.stats["audio_bytes_dropped"] += self.protocol.chunk_bytes
                self.protocol.stats["audio_chunks_dropped_backlog"] += 1
                continue
            link.send_audio(frame, captured_at, self.uplink_latency)

    def commit(self) -> None:
        link = self._live()
        if link is None:
            if self._state != "closed":
                self.protocol.hold_commit()
            return
        for frame in self.protocol.commit():
            link.enqueue(frame)

    def create_response(self, instructions: str | None = None) -> None:
        """Ask for a response; queued (once) while one is active or while reconnecting."""
        link = self._live()
        if link is None:
            if self._state != "closed":
                self.protocol.defer_response(instructions)
            return
        frame = self.protocol.create_response(instructions)
        if frame is not None:
            link.enqueue(frame)

    def cancel_response(self) -> None:
        """Cancel the active response; nothing is sent when none is active."""
        link = self._live()
        frame = self.protocol.cancel_response() if link is not None else None
        if link is not None and frame is not None:
            link.enqueue(frame)

    def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """The caller heard `audio_end_ms` of this item: the server's copy is truncated
        when it still has the item, and the recap always keeps only what was heard."""
        frame = self.protocol.truncate(item_id, audio_end_ms)
        link = self._live()
        if link is not None and frame is not None:
            link.enqueue(frame)

    def send_function_output(self, call_id: str, output: str) -> None:
        """The tool's result; between connections it joins the recap, and the next
        connection is asked to answer it."""
        frame = self.protocol.function_output(call_id, output)
        link = self._live()
        if link is not None:
            link.enqueue(frame)

    def add_message(self, role: str, text: str) -> None:
        """A text message item; while reconnecting it only joins the replayed recap."""
        frame = self.protocol.add_message(role, text)
        link = self._live()
        if link is not None:
            link.enqueue(frame)

    def _live(self) -> Link | None:
        return self._link if self._state == "open" else None

    # ------------------------------------------------------------------ connections

    async def _open(self) -> ClientConnection:
        return await open_websocket(
            self.endpoint,
            self._where,
            open_timeout_s=self._open_timeout_s,
            ping_interval_s=self._ping_interval_s,
        )

    async def _establish(self, *, standby: bool = False) -> Link:
        """Open a websocket and complete the Realtime handshake on it; a `standby` one
        is read apart from the live conversation until it is adopted."""
        ws = await self._open()
        link = Link(ws=ws, outgoing=asyncio.Queue())
        if standby:
            link.standby = StandbyHandshake()
        else:
            self.protocol.connection_opened()
        link.reader = asyncio.create_task(self._read(link), name="realtime-reader")
        link.writer = asyncio.create_task(
            write_loop(link, self.uplink_latency), name="realtime-writer"
        )
        try:
            await self._handshake(link)
        except BaseException:
            await shutdown(link, drain=False)
            raise
        return link

    async def _handshake(self, link: Link) -> None:
        """session.created, then our session.update, then session.updated (or a timeout)."""
        if not await wait_for_flag(link, link.created, self._ready_timeout_s, self._where):
            raise RealtimeProtocolError(
                f"{self._where} accepted the websocket but sent no session.created within "
                f"{self._ready_timeout_s:g} s: not a Realtime endpoint?"
            )
        link.enqueue(self.protocol.session_update())
        if not await wait_for_flag(link, link.ready, self._ready_timeout_s, self._where):
            forced = link.standby.force_ready() if link.standby else self.protocol.force_ready()
            if forced:
                self._log.warning(
                    "realtime_session_updated_missing",
                    waited_s=self._ready_timeout_s,
                    note="continuing with the configuration we asked for",
                )
            link.ready.set()

    def _go_live(self, link: Link, *, first: bool = False) -> None:
        self._link = link
        self._state = "open"
        for frame in self.protocol.resume_messages(first=first):
            link.enqueue(frame)

    async def _read(self, link: Link) -> LinkEnd:
        protocol = self.protocol
        try:
            async for frame in link.ws:
                if link.retired:
                    break
                standby = link.standby
                if standby is not None:
                    standby.feed(frame)
                    if standby.created:
                        link.created.set()
                    if standby.ready:
                        link.ready.set()
                    if standby.failure is not None:
                        return LinkEnd(None, standby.failure)
                    continue
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
                    link.enqueue(out)
                if protocol.session_created:
                    link.created.set()
                if protocol.ready:
                    link.ready.set()
                if protocol.fatal is not None:
                    return LinkEnd(None, "", fatal=protocol.fatal)
                if protocol.expired:
                    return LinkEnd(None, "session_expired", expired=True)
        except ConnectionClosed:
            pass
        return LinkEnd(link.ws.close_code, link.ws.close_reason or "")

    # ------------------------------------------------------------------ supervision

    async def _supervise(self) -> None:
        """Watch the live connection: roll it over before its lifetime runs out, replace
        it when lost, end the session when it cannot be replaced."""
        streak = 0
        while True:
            link = self._link
            if link is None or link.reader is None:
                return
            timeout = None
            if self._rollover is not None:
                timeout = self._rollover.next_check_s(time.monotonic() - link.opened_at)
            await asyncio.wait({link.reader}, timeout=timeout)
            if self._closing:
                return
            if not link.reader.done():
                await self._roll_over(link)
                continue
            if link.reader.cancelled() or link.reader.exception() is not None:
                end = LinkEnd(None, "reader failed")
            else:
                end = link.reader.result()
            self._close_in_background(link)
            fatal = fatal_error(self._where, end)
            reconnect = fatal is None and self._max_reconnects > 0
            for event in self.protocol.connection_lost(
                LINK_LOST if reconnect else "session_closed"
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
            replacement = self._ready_standby()
            if replacement is not None:
                self.protocol.connection_opened()
                self._adopt(replacement)
                streak = max(streak, 1)
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
                except Transient as exc:
                    last = str(exc)
                    self._log.warning("realtime_reconnect_failed", attempt=streak, error=last)
                except RealtimeError as exc:
                    self._log.error("realtime_reconnect_refused", attempt=streak, error=str(exc))
                    self._finish(str(exc))
                    return
            self.protocol.stats["reconnects"] += 1
            await self._consumer_caught_up()
            self._go_live(replacement)
            self._log.info("realtime_session_reconnected", attempt=streak)
            self._events.put_nowait(SessionReconnected(streak))

    async def _consumer_caught_up(self) -> None:
        """Let the consumer handle what the lost connection left before the replacement
        is briefed: cutting an interrupted answer, it tells the session what the caller
        heard, which decides the recap and whether the question is sent again."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._events.join(), CONSUMER_WAIT_S)

    async def _roll_over(self, link: Link) -> None:
        """One look at a connection near its lifetime limit (see `rollover.py`)."""
        assert self._rollover is not None
        now = time.monotonic()
        standby = self._standby
        if standby is not None and standby.reader is not None and standby.reader.done():
            self._log.warning("realtime_standby_lost", why=setup_error(self._where, standby.reader))
            self._close_in_background(standby)
            self._standby = standby = None
        quiet = self.protocol.quiet and not self._agent_playing()
        decision = self._rollover.decide(
            now - link.opened_at,
            standby_ready=standby is not None and standby.ready.is_set(),
            quiet=quiet,
            busy=self.protocol.busy,
        )
        if decision == "prepare" and now >= self._standby_retry_at:
            try:
                self._standby = await self._establish(standby=True)
            except (Transient, RealtimeError) as exc:
                # The live connection still works; if it dies first, reconnecting reports.
                self._log.warning("realtime_standby_failed", error=str(exc))
                self._standby_retry_at = time.monotonic() + STANDBY_RETRY_S
        elif decision in ("switch", "force") and standby is not None:
            if decision == "force":
                self._log.warning(
                    "realtime_rollover_forced",
                    age_s=round(now - link.opened_at, 1),
                    why="no pause before the session's lifetime limit",
                    agent_playing=self._agent_playing(),
                    owed_answer=not self.protocol.quiet,
                )
            self._switch_to(standby, age_s=now - link.opened_at, at_pause=decision == "switch")

    def _switch_to(self, standby: Link, *, age_s: float, at_pause: bool) -> None:
        """Make-before-break: the call's audio goes to the standby from this frame on.

        Synchronous on purpose: no caller audio can be appended between the old
        connection's last frame and the new one's first. The recap and the last moment
        of caller audio are replayed first, so words spoken as the switch happened are
        heard by the new session too.
        """
        old = self._link
        self._standby = None
        self.protocol.connection_switched()
        self._adopt(standby)
        if old is not None:
            old.retired = True
            self._close_in_background(old, drain=True)
        self.protocol.stats["rollovers"] += 1
        self._go_live(standby)
        self._log.info("realtime_session_rolled_over", age_s=round(age_s, 1), at_pause=at_pause)
        self._events.put_nowait(SessionReconnected(0, rollover=True))

    def _ready_standby(self) -> Link | None:
        """The standby connection, if one is ready to take over at once."""
        standby, self._standby = self._standby, None
        if standby is None:
            return None
        if standby.ready.is_set() and standby.reader is not None and not standby.reader.done():
            return standby
        self._close_in_background(standby)
        return None

    def _adopt(self, link: Link) -> None:
        """A standby connection becomes the protocol's: its held handshake is read now."""
        handshake = link.standby
        assert handshake is not None
        link.standby = None
        for frame in handshake.held:
            for event in self.protocol.feed(frame):
                self._events.put_nowait(event)
        if handshake.forced or not self.protocol.ready:
            self.protocol.force_ready()

    def _close_in_background(self, link: Link, *, drain: bool = False) -> None:
        task = asyncio.create_task(shutdown(link, drain=drain), name="realtime-close")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _finish(self, reason: str) -> None:
        """Enter the final state once: end anything in flight, then `SessionClosed`."""
        if self._state == "closed":
            return
        self._state = "closed"
        self._link = None
        standby, self._standby = self._standby, None
        if standby is not None:
            self._close_in_background(standby)
        for event in self.protocol.connection_lost("session_closed"):
            self._events.put_nowait(event)
        self._events.put_nowait(SessionClosed(reason))
        self._log.info("realtime_session_closed", reason=reason, **self.stats)

    def _backoff(self, attempt: int) -> float:
        base, cap = self._backoff_s
        delay: float = min(cap, base * 2 ** max(0, attempt - 1))
        return delay * (0.8 + 0.2 * random.random())
