"""Every call kept: the switchboard's call events become records and recordings.

Why a listener: the switchboard already tells its listeners everything that happens
to a call (offered, answered, each transcript line, tool call, turn, barge-in, keypad
entry, the end). The keeper turns each into one `records` event, handed to a writer
thread without waiting (a slow database delays writes, never a call), and, for the
profiles that record, gives each call a `CallRecording` that takes one frame pair per
media tick.

Which calls are kept is decided per call from the deployment it was admitted under:
a profile's `keep_records` / `record`, else `[records] enabled` / `record`.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

import structlog

from telephony_agent.call.profile import FrameRecorder
from telephony_agent.call.record import BargeIn, CallRecord, TranscriptLine, TurnLatency
from telephony_agent.call.tools import ToolResult
from telephony_agent.config import RecordsSettings
from telephony_agent.records import (
    BargeInRecorded,
    CallAnswered,
    CallEnded,
    CallOffered,
    DtmfEntered,
    RecordEvent,
    RecordingChanged,
    RecordWriter,
    ToolCalled,
    TranscriptAdded,
    TurnMeasured,
)
from telephony_agent.records.recording import CallRecording, RecordingSink
from telephony_agent.switchboard.board import Admission, CallListener, LiveCall
from telephony_agent.switchboard.request import CallRequest, Refusal

__all__ = ["CallKeeper", "instance_name", "records_paths"]

log = structlog.get_logger(__name__)

#: Who ended a call that never ran, by why it never ran.
_ABANDONED_BY = {
    "cancelled": "caller",
    "realtime_unavailable": "provider",
    # An outbound call the callee's side did not take.
    "busy": "callee",
    "declined": "callee",
    "no_answer": "callee",
    "not_found": "callee",
    "unavailable": "callee",
}


def instance_name() -> str:
    """What tells this process's calls from another instance's in a shared database."""
    return socket.gethostname()


@dataclass(frozen=True)
class RecordsPaths:
    data_dir: Path
    database: str
    recordings: Path


def records_paths(settings: RecordsSettings) -> RecordsPaths:
    """Where records and recordings live, from `[records]` (relative to the working dir)."""
    data_dir = Path(settings.data_dir)
    database = settings.database or f"sqlite:///{(data_dir / 'calls.db').as_posix()}"
    recordings = (
        Path(settings.recordings_dir) if settings.recordings_dir else data_dir / "recordings"
    )
    return RecordsPaths(data_dir, database, recordings)


@dataclass
class _Kept:
    """One call being kept: its sequence counters and its recording."""

    keep: bool
    seq: dict[str, int] = field(default_factory=dict)
    recording: CallRecording | None = None

    def next(self, kind: str) -> int:
        value = self.seq.get(kind, 0)
        self.seq[kind] = value + 1
        return value


class CallKeeper(CallListener):
    """Maps call events to record events and starts and ends recordings."""

    def __init__(
        self,
        writer: RecordWriter | None,
        sink: RecordingSink | None,
        recordings_dir: Path,
        *,
        instance: str,
    ) -> None:
        self._writer = writer
        self._sink = sink
        self._recordings = recordings_dir
        self._instance = instance
        self._calls: dict[str, _Kept] = {}

    # ------------------------------------------------------------------ helpers

    def _submit(self, event: RecordEvent) -> None:
        if self._writer is not None:
            self._writer.submit(event)

    def _kept(self, call_id: str) -> _Kept | None:
        kept = self._calls.get(call_id)
        return kept if kept is not None and kept.keep else None

    @staticmethod
    def _settings(admission: Admission) -> RecordsSettings:
        return admission.deployment.settings.records

    # ------------------------------------------------------------------ recordings

    def recorder_for(self, admission: Admission, rate: int) -> FrameRecorder | None:
        """The switchboard's recorder factory: a stereo WAV when the profile records."""
        wanted = admission.profile.record
        if wanted is None:
            wanted = self._settings(admission).record
        if not wanted or self._sink is None:
            return None
        day = time.strftime("%Y/%m/%d", time.gmtime())
        path = self._recordings / day / f"{admission.id}.wav"
        call_id = admission.id
        kept = self._calls.setdefault(admission.id, _Kept(keep=self._keeps(admission)))
        keep = kept.keep

        def on_status(status: str, note: str | None) -> None:
            # Called from the recording thread, possibly after the call has ended; the
            # writer's queue is thread-safe.
            if keep:
                self._submit(RecordingChanged(call_id, str(path), status, note))

        recording = CallRecording(self._sink, path, rate, on_status=on_status)
        kept.recording = recording
        if kept.keep:
            self._submit(RecordingChanged(call_id, str(path), "recording", None))
        return recording

    def _keeps(self, admission: Admission) -> bool:
        keep = admission.profile.keep_records
        return self._settings(admission).enabled if keep is None else keep

    # ------------------------------------------------------------------ call events

    def call_offered(self, admission: Admission) -> None:
        kept = self._calls.setdefault(admission.id, _Kept(keep=self._keeps(admission)))
        if kept.keep:
            self._submit(self._offered(admission.id, admission.request, admission))

    def _offered(
        self, call_id: str, request: CallRequest, admission: Admission | None
    ) -> CallOffered:
        return CallOffered(
            call_id=call_id,
            external_id=request.external_id[:256],
            kind=request.kind,
            direction=request.direction,
            caller=request.caller,
            dialled=request.dialled,
            profile=admission.profile.name if admission is not None else "",
            provider=admission.provider if admission is not None else "",
            model=admission.model if admission is not None else None,
            remote=request.remote,
            offered_at=time.time(),
            instance=self._instance,
        )

    def call_refused(self, request: CallRequest, refusal: Refusal) -> None:
        """A refused call is kept too: over capacity is what a pilot must see."""
        if self._writer is None:
            return
        call_id = uuid4().hex
        self._submit(self._offered(call_id, request, None))
        self._submit(CallEnded(call_id, time.time(), refusal.reason, "system", answered=False))

    def call_abandoned(self, admission: Admission, reason: str) -> None:
        kept = self._calls.pop(admission.id, None)
        if kept is not None and kept.keep:
            by = _ABANDONED_BY.get(reason, "system")
            self._submit(CallEnded(admission.id, time.time(), reason, by, answered=False))

    def call_started(self, call: LiveCall) -> None:
        if self._kept(call.id) is not None:
            self._submit(CallAnswered(call.id, time.time(), call.call.leg.codec))

    def transcript(self, call: LiveCall, line: TranscriptLine) -> None:
        kept = self._kept(call.id)
        if kept is not None:
            self._submit(
                TranscriptAdded(
                    call.id,
                    kept.next("line"),
                    line.speaker,
                    line.text,
                    line.start_ms,
                    line.end_ms,
                    line.truncated,
                )
            )

    def tool_called(self, call: LiveCall, result: ToolResult) -> None:
        kept = self._kept(call.id)
        if kept is not None:
            self._submit(
                ToolCalled(
                    call.id,
                    kept.next("tool"),
                    result.name,
                    result.arguments,
                    result.output,
                    result.ok,
                    result.error,
                    result.duration_ms,
                    result.started_at,
                )
            )

    def turn(self, call: LiveCall, latency: TurnLatency) -> None:
        kept = self._kept(call.id)
        if kept is not None:
            self._submit(
                TurnMeasured(
                    call.id,
                    kept.next("turn"),
                    latency.at_ms,
                    latency.to_first_delta_ms,
                    latency.to_first_frame_ms,
                )
            )

    def barge_in(self, call: LiveCall, barge_in: BargeIn) -> None:
        kept = self._kept(call.id)
        if kept is not None:
            self._submit(
                BargeInRecorded(
                    call.id,
                    kept.next("barge_in"),
                    barge_in.at_ms,
                    barge_in.item_id,
                    barge_in.played_ms,
                    barge_in.truncated,
                )
            )

    def dtmf(self, call: LiveCall, digits: str) -> None:
        if self._kept(call.id) is not None:
            self._submit(DtmfEntered(call.id, digits))

    def call_ended(self, call: LiveCall, record: CallRecord) -> None:
        kept = self._calls.pop(call.id, None)
        if kept is None:
            return
        if kept.recording is not None:
            kept.recording.close()  # the final status comes from the recording thread
        if kept.keep:
            self._submit(
                CallEnded(
                    call.id,
                    time.time(),
                    record.end_reason,
                    record.ended_by or "system",
                    answered=True,
                )
            )
