"""Stereo call recordings (caller left, agent right) written by one background thread.

Why a thread and chunks: the media clock ticks every 20 ms for every call on one asyncio
loop, and a disk can stall for seconds (a full volume, a slow network mount, a busy
journal). So the per-tick `CallRecording.add` only copies two frames into a preallocated
interleaved buffer; every half second the filled buffer is handed to the process's one
`RecordingSink` without waiting, and only the writer thread ever touches a file. When the
writer falls behind, chunks are dropped and counted instead of piling up without bound.

Why the header is rewritten while writing: the file must be a playable WAV at every
moment, for someone listening to a live call and after a crash. The header is written at
creation with no data, and its two sizes are patched at most every `header_every_s` of
writing and at the end; `records.repair.repair_recordings` fixes what a crash left.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from io import FileIO
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np
import structlog
from numpy.typing import NDArray

from telephony_agent.records.repair import (
    FRAME_BYTES,
    MAX_DATA_BYTES,
    RecordingFile,
    describe_os_error,
)

__all__ = ["CallRecording", "RecordingSink", "RecordingStats"]

log = structlog.get_logger(__name__)

TICKS_PER_SECOND: Final = 50
_INT16: Final = np.dtype(np.int16)
DROP_LOG_INTERVAL_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class RecordingStats:
    """Counters of one sink since it was created (a snapshot, safe to read from any thread)."""

    chunks_written: int
    bytes_written: int
    dropped_chunks: int
    failures: int  # recordings stopped by a create or write error
    queued_chunks: int
    writer_cpu_s: float  # CPU time of the writer thread so far


class _Op(NamedTuple):
    kind: str  # "open" | "chunk" | "notice" | "finalise" | "stop"
    rec: CallRecording | None = None
    chunk: NDArray[np.int16] | None = None


class RecordingSink:
    """One background writer thread for all recordings of a process (bounded queue).

    Audio chunks count against `max_queue_chunks` until they are on disk, so memory is
    bounded by that many chunks (half a second of one call each). Opening and finalising
    a file are never dropped, so every file that was created gets a final header.
    """

    def __init__(self, *, max_queue_chunks: int = 4096, header_every_s: float = 2.0) -> None:
        if max_queue_chunks < 1:
            raise ValueError(f"max_queue_chunks must be at least 1, got {max_queue_chunks}")
        if not (math.isfinite(header_every_s) and header_every_s >= 0):
            raise ValueError(f"header_every_s must be a number >= 0, got {header_every_s}")
        self.max_queue_chunks = max_queue_chunks
        self.header_every_s = header_every_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: deque[_Op] = deque()
        self._queued_chunks = 0
        self._accepting = True
        self._thread: threading.Thread | None = None
        self._live: set[CallRecording] = set()  # opened, not finalised (writer thread only)
        self._chunks_written = 0
        self._bytes_written = 0
        self._dropped = 0
        self._failures = 0
        self._cpu_s = 0.0
        self._drops_unlogged = 0
        self._drop_logged_at = -math.inf

    def start(self) -> None:
        """Start the writer thread (idempotent); files are created only once it runs."""
        with self._lock:
            if not self._accepting:
                raise RuntimeError("the recording sink is closed")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
        self._thread.start()

    async def close(self, timeout_s: float = 10.0) -> None:
        """Write everything queued, finalise every file, stop the thread (off the loop)."""
        await asyncio.to_thread(self.close_sync, timeout_s)

    def close_sync(self, timeout_s: float = 10.0) -> None:
        """Like `close`, blocking: for shutdown paths that have no running loop."""
        with self._lock:
            if self._accepting:
                self._accepting = False
                self._pending.append(_Op("stop"))
            thread = self._thread
            if thread is None:  # never started: still create and finalise what was queued
                thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
                self._thread = thread
                thread.start()
        self._wake.set()
        thread.join(timeout_s)
        if thread.is_alive():
            log.warning(
                "recording_sink_close_timeout",
                timeout_s=timeout_s,
                queued_chunks=self._queued_chunks,
            )

    @property
    def stats(self) -> RecordingStats:
        return RecordingStats(
            chunks_written=self._chunks_written,
            bytes_written=self._bytes_written,
            dropped_chunks=self._dropped,
            failures=self._failures,
            queued_chunks=self._queued_chunks,
            writer_cpu_s=self._cpu_s,
        )

    def _write_some(self, file: FileIO, data: memoryview) -> int:
        """The one place audio bytes reach the OS; returns how many were written."""
        return file.write(data) or 0

    # -- the producer side (any thread, never waits for the disk) --------------------------

    def _submit(self, op: _Op) -> bool:
        """Queue an operation; False when it is a chunk over the bound or the sink is closed."""
        log_drops = 0
        with self._lock:
            is_chunk = op.kind == "chunk"
            accepted = self._accepting and (
                not is_chunk or self._queued_chunks < self.max_queue_chunks
            )
            if accepted:
                self._queued_chunks += is_chunk
                self._pending.append(op)
            elif is_chunk:
                self._dropped += 1
                self._drops_unlogged += 1
                now = time.monotonic()
                if now - self._drop_logged_at >= DROP_LOG_INTERVAL_S:
                    log_drops, self._drops_unlogged = self._drops_unlogged, 0
                    self._drop_logged_at = now
        if accepted:
            self._wake.set()
        elif log_drops:
            log.warning(
                "recording_chunks_dropped",
                dropped=log_drops,
                dropped_total=self._dropped,
                max_queue_chunks=self.max_queue_chunks,
            )
        return accepted

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                self._wake.clear()
                batch, self._pending = self._pending, deque()
            for op in batch:
                if op.kind == "stop":
                    for rec in list(self._live):
                        rec._closed = True  # later `add` calls are ignored
                        rec._failure = rec._failure or "recorder stopped before the call ended"
                        self._finalise(rec)
                    self._cpu_s = time.thread_time()
                    return
                try:
                    self._handle(op)
                except Exception as exc:  # a bug must not stop every other recording
                    log.exception("recording_writer_error", op=op.kind)
                    if op.rec is not None and op.rec._wav is not None:
                        self._stop(op.rec, type(exc).__name__)
            self._cpu_s = time.thread_time()

    def _handle(self, op: _Op) -> None:
        rec = op.rec
        assert rec is not None
        if op.kind == "open":
            self._live.add(rec)
            try:
                rec._wav = RecordingFile(rec.path, rec.rate, self._write_some)
            except OSError as exc:
                self._failures += 1
                rec._failure = f"could not create the file: {describe_os_error(exc)}"
                log.warning("recording_stopped", path=str(rec.path), reason=rec._failure)
                rec._report("partial", rec._failure)
        elif op.kind == "chunk":
            try:
                assert op.chunk is not None
                self._write_chunk(rec, op.chunk)
            finally:
                with self._lock:
                    self._queued_chunks -= 1
        elif op.kind == "notice":
            rec._report("partial", rec.reason)
        elif op.kind == "finalise":
            self._finalise(rec)

    def _write_chunk(self, rec: CallRecording, chunk: NDArray[np.int16]) -> None:
        wav = rec._wav
        if wav is None:  # never created, or stopped after an error
            return
        data = chunk.data.cast("B")
        room = MAX_DATA_BYTES - wav.data_bytes
        before = wav.file_bytes
        try:
            wav.append(data[:room])
        except OSError as exc:
            self._stop(rec, describe_os_error(exc))
            return
        finally:
            self._bytes_written += wav.file_bytes - before
        self._chunks_written += 1
        rec.frames_written = wav.data_bytes // FRAME_BYTES
        if len(data) > room:
            self._stop(rec, "WAV size limit reached")
        elif time.monotonic() - wav.header_at >= self.header_every_s:
            try:
                wav.sync_header()
            except OSError as exc:
                self._stop(rec, describe_os_error(exc))

    def _stop(self, rec: CallRecording, what: str) -> None:
        """Give up on one recording after an error: a valid file of the whole frames so far."""
        wav, rec._wav = rec._wav, None
        assert wav is not None
        with contextlib.suppress(OSError):  # then `repair_recordings` fixes the header
            wav.finish()
        rec.frames_written = wav.data_bytes // FRAME_BYTES
        rec._failure = f"{what} after {rec.frames_written / rec.rate:.1f} s"
        self._failures += 1
        log.warning("recording_stopped", path=str(rec.path), reason=rec._failure)
        rec._report("partial", rec._failure)

    def _finalise(self, rec: CallRecording) -> None:
        self._live.discard(rec)
        if rec._wav is not None:
            try:
                rec._wav.finish()
                rec.frames_written = rec._wav.data_bytes // FRAME_BYTES
                rec._wav = None
            except OSError as exc:
                self._stop(rec, describe_os_error(exc))
        problems = [rec._failure] if rec._failure else []
        if rec.dropped_chunks:
            problems.append(f"{rec._dropped_frames / rec.rate:.1f} s dropped: disk too slow")
        if problems:
            rec._report("partial", "; ".join(problems), final=True)
        else:
            rec._report("complete", None, final=True)


class CallRecording:
    """One call's stereo WAV: caller left, agent right, leg rate, 16-bit.

    `on_status(status, reason)` is called FROM THE WRITER THREAD (hop to your loop with
    `call_soon_threadsafe`): once when the recording turns "partial" (create or write
    error, first dropped chunk) and once when the file is finalised ("complete" with no
    reason, or "partial" with the whole reason). It is not called when the sink was
    already closed at creation; `status` and `reason` say so.

    `frames` counts stereo frames given to `add`; `frames_written` those in the file,
    equal to `frames` once a "complete" recording is finalised.
    """

    def __init__(
        self,
        sink: RecordingSink,
        path: Path,
        rate: int,
        *,
        on_status: Callable[[str, str | None], None] | None = None,
        chunk_ticks: int = 25,
    ) -> None:
        if rate <= 0 or rate % TICKS_PER_SECOND:
            raise ValueError(f"sample rate must be a positive multiple of 50, got {rate}")
        if chunk_ticks < 1:
            raise ValueError(f"chunk_ticks must be at least 1, got {chunk_ticks}")
        self.path = Path(path)
        self.rate = rate
        self.frame_samples = rate // TICKS_PER_SECOND
        self.status = "recording"
        self.reason: str | None = None
        self.frames = 0
        self.frames_written = 0
        self.bad_frames = 0  # wrong length (padded or cut) or not audio (silence)
        self.dropped_chunks = 0
        self._sink = sink
        self._on_status = on_status
        self._rows = chunk_ticks * self.frame_samples
        self._shape = (self.frame_samples,)
        self._buf: NDArray[np.int16]
        self._left: NDArray[np.int16]  # views of `_buf`, one per channel
        self._right: NDArray[np.int16]
        self._new_buffer()
        self._pos = 0
        self._closed = False
        self._dropped_frames = 0
        self._failure: str | None = None  # writer thread
        self._told_partial = False  # writer thread
        self._wav: RecordingFile | None = None  # writer thread
        if not sink._submit(_Op("open", self)):
            self._closed = True
            self.status, self.reason = "partial", "the recorder was already closed"

    def add(self, caller: NDArray[np.int16] | None, agent: NDArray[np.int16] | None) -> None:
        """Record one tick: what the caller sent and what the agent played (None = silence)."""
        if self._closed:
            return
        start = self._pos
        end = self._pos = start + self.frame_samples
        # The usual case inline (a method call costs as much as the copy), the rest in _fill.
        if type(caller) is np.ndarray and caller.dtype is _INT16 and caller.shape == self._shape:
            self._left[start:end] = caller
        else:
            self._fill(self._left[start:end], caller)
        if type(agent) is np.ndarray and agent.dtype is _INT16 and agent.shape == self._shape:
            self._right[start:end] = agent
        else:
            self._fill(self._right[start:end], agent)
        self.frames += self.frame_samples
        if end == self._rows:
            if self._hand_over(self._buf):
                self._new_buffer()
            self._pos = 0

    def close(self) -> None:
        """Hand the tail over and ask the writer to finalise the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._pos:
            self._hand_over(self._buf[: self._pos])
        self._buf = self._left = self._right = self._buf[:0]
        self._sink._submit(_Op("finalise", self))

    def _new_buffer(self) -> None:
        """A fresh interleaved chunk, with a view of each channel to fill tick by tick."""
        self._buf = np.empty((self._rows, 2), dtype="<i2")
        self._left, self._right = self._buf[:, 0], self._buf[:, 1]

    def _fill(self, column: NDArray[np.int16], frame: NDArray[np.int16] | None) -> None:
        if frame is None:
            column.fill(0)
            return
        try:
            if frame.dtype.kind == "i" and frame.dtype.itemsize == 2:  # any byte order
                if frame.shape == column.shape:
                    column[:] = frame
                    return
                flat = np.ravel(frame)
                keep = min(flat.shape[0], column.shape[0])
                column[:keep] = flat[:keep]
                column[keep:] = 0
            else:
                column.fill(0)  # not 16-bit audio: silence rather than a guess at its scale
        except Exception:  # whatever arrived, the tick must not fail
            column.fill(0)
        self.bad_frames += 1

    def _hand_over(self, chunk: NDArray[np.int16]) -> bool:
        if self._sink._submit(_Op("chunk", self, chunk)):
            return True
        self.dropped_chunks += 1
        self._dropped_frames += chunk.shape[0]
        if self.status == "recording":
            self.status, self.reason = "partial", "audio dropped: disk too slow"
            self._sink._submit(_Op("notice", self))
        return False

    def _report(self, status: str, reason: str | None, *, final: bool = False) -> None:
        """Writer thread: record the status and tell the owner (the first problem, the end)."""
        if not final and self._told_partial:
            return
        self._told_partial = True
        self.status, self.reason = status, reason
        if self._on_status is None:
            return
        try:
            self._on_status(status, reason)
        except Exception:
            log.exception("recording_status_callback_failed", path=str(self.path))
