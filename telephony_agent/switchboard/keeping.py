"""Records and recordings for one running service: opened at start, flushed at stop.

Why at start: an unreachable database or an unwritable recordings folder must stop
`serve` with one line before it answers anyone, not lose the first calls' records.
At start the writer applies schema migrations and closes the calls a crashed process
left open (end reason `crashed`), and recordings a crash left with a stale header are
repaired. Retention is applied at start and then daily.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import structlog

from telephony_agent.config import Settings
from telephony_agent.errors import ConfigError
from telephony_agent.logs import register_secret
from telephony_agent.records import RecordReader, RecordWriter, open_reader, url_password
from telephony_agent.records.recording import RecordingSink
from telephony_agent.records.repair import repair_recordings
from telephony_agent.switchboard.board import Switchboard
from telephony_agent.switchboard.keeper import CallKeeper, instance_name, records_paths
from telephony_agent.workers import worker_instance

__all__ = ["Keeping"]

log = structlog.get_logger(__name__)

PRUNE_EVERY_S = 24 * 3600.0


class Keeping:
    """The records writer, the recordings sink and the keeper that feeds them."""

    def __init__(
        self,
        settings: Settings,
        writer: RecordWriter | None,
        sink: RecordingSink,
        keeper: CallKeeper,
    ) -> None:
        self._settings = settings
        self.writer = writer
        self.sink = sink
        self.keeper = keeper
        self._pruning: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, settings: Settings, *, worker: int | None = None) -> Keeping:
        """Open the database (migrations, crash recovery) and the recordings folder;
        `worker` is the index of a `serve --workers` process (its own instance name)."""
        instance = worker_instance(instance_name(), worker)
        records = settings.records
        paths = records_paths(records)
        keeps = records.enabled or any(p.keep_records for p in settings.profiles)
        records_calls = records.record or any(p.record for p in settings.profiles)
        if keeps or records_calls:
            _make_dir("records.data_dir", paths.data_dir)
        writer: RecordWriter | None = None
        if keeps:
            register_secret(url_password(paths.database))
            writer = RecordWriter(paths.database, instance=instance, max_queue=records.queue_size)
            await asyncio.to_thread(writer.open)
        if records_calls:
            _make_dir("records.recordings_dir", paths.recordings)
            repaired = await asyncio.to_thread(repair_recordings, paths.recordings)
            if repaired:
                log.info("recordings_repaired", files=len(repaired))
        # 1024 chunks of 0.5 s: at most ~100 MB queued at 48 kHz when the disk stalls.
        sink = RecordingSink(max_queue_chunks=1024)
        sink.start()
        keeper = CallKeeper(writer, sink, paths.recordings, instance=instance)
        keeping = cls(settings, writer, sink, keeper)
        if writer is not None and records.retention_days is not None:
            await keeping.prune(records.retention_days)
            keeping._pruning = asyncio.ensure_future(keeping._prune_daily(records.retention_days))
        return keeping

    def health(self) -> dict[str, object]:
        """Counters for `/health`: is keeping up, and is anything being lost."""
        recording = self.sink.stats
        snapshot: dict[str, object] = {
            "recordings_dropped_chunks": recording.dropped_chunks,
            "recordings_write_failures": recording.failures,
        }
        if self.writer is not None:
            stats = self.writer.stats
            snapshot.update(
                {
                    "records_queue_depth": stats.queue_depth,
                    "records_written": stats.written,
                    "records_dropped": stats.dropped,
                    "records_failed_attempts": stats.failed_attempts,
                }
            )
        return snapshot

    def open_reader(self) -> RecordReader | None:
        """A read connection for `/calls` (None when records are not kept)."""
        if self.writer is None:
            return None
        return open_reader(records_paths(self._settings.records).database)

    def attach(self, board: Switchboard) -> None:
        board.add_listener(self.keeper)
        board.recorder_factory = self.keeper.recorder_for

    async def prune(self, days: int) -> None:
        """Delete records older than `days` and their recordings."""
        if self.writer is None:
            return
        paths = await self.writer.prune(days)
        removed = 0
        for path in paths:
            with contextlib.suppress(OSError):
                os.remove(path)
                removed += 1
        if paths:
            log.info("records_pruned", calls=len(paths), recordings_removed=removed, days=days)

    async def _prune_daily(self, days: int) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY_S)
            try:
                await self.prune(days)
            except Exception as exc:  # pruning must never stop the service
                log.warning("records_prune_failed", error=type(exc).__name__)

    async def close(self) -> None:
        """Stop pruning, then flush recordings and records (bounded waits)."""
        if self._pruning is not None:
            self._pruning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruning
        await self.sink.close()
        if self.writer is not None:
            await self.writer.close()


def _make_dir(key: str, path: Path) -> None:
    """Create a folder we must write to, and prove it is writable, in one clear line."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"{key} = {str(path)!r}: cannot write there ({exc.strerror or exc}); "
            "expected a folder this service may create files in"
        ) from None
