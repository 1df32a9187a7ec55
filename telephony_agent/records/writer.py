"""The records writer: call events in from the event loop, rows out in a thread of its own.

Why a thread and a bounded queue: the media loop ticks every 20 ms and must never wait
for a disk or a database server. `submit` only puts the event on a queue (dropping it,
counted, when the queue is full); one daemon thread applies events in order, each in its
own transaction, so a crash loses at most the event in flight. When the database fails,
the thread retries the same event with a growing pause while the queue absorbs what
arrives, so an outage shorter than the queue loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from telephony_agent.records.errors import RecordsError, RecordsUnavailable
from telephony_agent.records.events import RecordEvent
from telephony_agent.records.store import RecordStore, open_store
from telephony_agent.records.urls import redact_url, short_reason, url_password

log = structlog.get_logger(__name__)

FIRST_RETRY_S = 0.1
MAX_RETRY_S = 5.0
DROP_WARNING_EVERY_S = 10.0
PRUNE_ENQUEUE_TIMEOUT_S = 5.0
_DAY_S = 86400.0


@dataclass
class WriterStats:
    """Counters for health checks and metrics.

    `submitted` and `dropped` are counted on the submitting side, the rest by the writer
    thread (which adds to `dropped` only for events abandoned at close).
    """

    submitted: int = 0
    written: int = 0
    #: Attempts that failed and will be retried (the database was locked or down).
    failed_attempts: int = 0
    #: Events lost: the queue was full, the writer was closed, or the close timed out.
    dropped: int = 0
    #: Events the database refused for good (bad data); logged and skipped, not retried.
    rejected: int = 0
    last_error: str | None = None
    _queue: queue.Queue[Any] | None = field(default=None, repr=False, compare=False)

    @property
    def queue_depth(self) -> int:
        """Events waiting to be written."""
        return self._queue.qsize() if self._queue is not None else 0


@dataclass(frozen=True)
class _Prune:
    older_than: float
    done: Future[list[str]]


@dataclass(frozen=True)
class _Flush:
    done: Future[None]


_WAKE = object()


class RecordWriter:
    """Writes call events to the records database without ever blocking the caller."""

    def __init__(
        self,
        url: str,
        *,
        base_dir: Path | None = None,
        instance: str,
        max_queue: int = 20000,
    ) -> None:
        self.url = url
        self.shown_url = redact_url(url)
        self.base_dir = base_dir
        self.instance = instance
        self._secrets = (url_password(url),)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self.stats = WriterStats(_queue=self._queue)
        #: Ids of this instance's calls that `open` found unfinished and closed as crashed.
        self.crashed: list[str] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stopping = threading.Event()
        self._abandon = threading.Event()
        self._last_drop_warning = -math.inf
        # Held for one addition: `dropped` is the one counter both sides add to.
        self._drop_lock = threading.Lock()

    def _open_store(self) -> RecordStore:
        """Open the store (in the writer thread); tests override this to wrap the store."""
        return open_store(self.url, base_dir=self.base_dir)

    def open(self) -> None:
        """Open the database in the writer thread, migrate it, close crashed calls.

        Blocks until that is done so its errors (RecordsError, RecordsUnavailable) reach
        the caller; afterwards the thread owns the connection.
        """
        if self._thread is not None or self._closed:
            raise RuntimeError("a RecordWriter opens once")
        ready: Future[None] = Future()
        thread = threading.Thread(
            target=self._run, args=(ready,), name="records-writer", daemon=True
        )
        thread.start()
        ready.result()
        self._thread = thread

    def submit(self, event: RecordEvent) -> None:
        """Queue one event; never blocks and never raises (a full queue drops it)."""
        self.stats.submitted += 1
        if self._closed:
            self._drop("records_writer_closed")
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._drop("records_queue_full")

    async def prune(self, retention_days: float) -> list[str]:
        """Delete calls that ended more than `retention_days` ago, in the writer thread.

        Returns their recording paths so the caller deletes the files.
        """
        if not retention_days > 0:
            raise RecordsError(
                f"records.retention_days = {retention_days}: expected a number of days above 0"
            )
        if self._thread is None or self._closed:
            raise RuntimeError("the records writer is not open")
        op = _Prune(time.time() - retention_days * _DAY_S, Future())
        try:
            await asyncio.to_thread(self._queue.put, op, True, PRUNE_ENQUEUE_TIMEOUT_S)
        except queue.Full:
            raise RecordsUnavailable(
                f"records database {self.shown_url}: the write queue is full, prune skipped"
            ) from None
        return await asyncio.wrap_future(op.done)

    async def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every event submitted so far is written (or the wait times out).

        For readers that must see what just happened (tests, a final report); the
        service itself never waits for the database.
        """
        if self._thread is None or self._closed:
            return
        op = _Flush(Future())
        await asyncio.to_thread(self._queue.put, op, True, timeout_s)
        await asyncio.wait_for(asyncio.wrap_future(op.done), timeout_s)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (for at most `timeout_s`), stop the thread, close the store."""
        await asyncio.to_thread(self.close_sync, timeout_s)

    def close_sync(self, timeout_s: float = 10.0) -> None:
        """`close` for callers without an event loop."""
        self._closed = True
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        # A full queue needs no wake-up: the thread is busy and will see `_stopping`.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_WAKE)
        thread.join(timeout_s)
        if thread.is_alive():
            self._abandon.set()
            thread.join(1.0)
        if thread.is_alive():
            log.warning("records_writer_stuck", queue_depth=self.stats.queue_depth)
        else:
            # Whatever slipped in while the thread was finishing is counted, not forgotten.
            self._abandon_queue()
        self._thread = None

    # --- the writer thread -------------------------------------------------------------

    def _run(self, ready: Future[None]) -> None:
        try:
            store = self._open_store()
        except BaseException as exc:
            ready.set_exception(exc)
            return
        try:
            self.crashed = self._mark_crashed(store)
        except BaseException as exc:
            store.close()
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            self._loop(store)
        except Exception:
            log.exception("records_writer_crashed")
            self._abandon_queue()
        finally:
            try:
                store.close()
            except Exception as exc:
                log.warning("records_close_failed", reason=short_reason(exc, self._secrets))

    def _mark_crashed(self, store: RecordStore) -> list[str]:
        try:
            ids = store.mark_crashed(time.time(), instance=self.instance)
        except RecordsError:
            raise
        except Exception as exc:
            error = RecordsUnavailable if store.is_transient(exc) else RecordsError
            raise error(
                f"records database {self.shown_url}: cannot close crashed calls:"
                f" {short_reason(exc, self._secrets)}"
            ) from None
        if ids:
            log.warning("records_calls_closed_as_crashed", count=len(ids), call_ids=ids[:20])
        return ids

    def _loop(self, store: RecordStore) -> None:
        while True:
            if self._abandon.is_set():
                self._abandon_queue()
                return
            if self._stopping.is_set():
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    return
            else:
                item = self._queue.get()
            if item is _WAKE:
                continue
            if isinstance(item, _Prune):
                self._prune(store, item)
            elif isinstance(item, _Flush):
                item.done.set_result(None)
            elif not self._write(store, item):
                self._abandon_queue(lost=1)
                return

    def _write(self, store: RecordStore, event: RecordEvent) -> bool:
        """Apply one event, retrying transient failures; False if abandoned at close."""
        pause = FIRST_RETRY_S
        while True:
            try:
                store.apply(event)
            except Exception as exc:
                reason = short_reason(exc, self._secrets)
                self.stats.last_error = reason
                self._recover(store)
                if not store.is_transient(exc):
                    self.stats.rejected += 1
                    log.error(
                        "records_event_rejected",
                        call_id=getattr(event, "call_id", None),
                        kind=type(event).__name__,
                        error=type(exc).__name__,
                        reason=reason,
                    )
                    return True
                self.stats.failed_attempts += 1
                log.warning(
                    "records_write_failed",
                    error=type(exc).__name__,
                    reason=reason,
                    retry_in_s=pause,
                    queue_depth=self.stats.queue_depth,
                )
                if self._abandon.wait(pause):
                    return False
                pause = min(pause * 2, MAX_RETRY_S)
            else:
                self.stats.written += 1
                return True

    def _prune(self, store: RecordStore, op: _Prune) -> None:
        try:
            paths = store.prune(op.older_than)
        except Exception as exc:
            self._recover(store)
            op.done.set_exception(exc)
        else:
            if paths:
                log.info("records_pruned", recordings=len(paths))
            op.done.set_result(paths)

    def _recover(self, store: RecordStore) -> None:
        try:
            store.recover()
        except Exception as exc:
            # Reconnecting failed too; the next attempt fails and retries the same way.
            self.stats.last_error = short_reason(exc, self._secrets)

    def _abandon_queue(self, lost: int = 0) -> None:
        """At a close that timed out: count what is still queued as dropped, fail prunes."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Prune):
                item.done.set_exception(
                    RecordsUnavailable(f"records database {self.shown_url}: writer closed")
                )
            elif isinstance(item, _Flush):
                item.done.set_result(None)
            elif item is not _WAKE:
                lost += 1
        if lost:
            with self._drop_lock:
                self.stats.dropped += lost
            log.warning("records_flush_incomplete", dropped=lost, last_error=self.stats.last_error)

    # --- the submitting side --------------------------------------------------------

    def _drop(self, why: str) -> None:
        with self._drop_lock:
            self.stats.dropped += 1
        now = time.monotonic()
        if now - self._last_drop_warning >= DROP_WARNING_EVERY_S:
            self._last_drop_warning = now
            log.warning(why, dropped=self.stats.dropped, queue_depth=self.stats.queue_depth)
