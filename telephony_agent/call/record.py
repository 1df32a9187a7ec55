"""What a finished call leaves behind: transcript, turn latencies, counters."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from telephony_agent.call.tools import ToolResult
from telephony_agent.metrics import LatencySamples


@dataclass(frozen=True)
class TranscriptLine:
    """One utterance; `t` is seconds since the call started when the line was written.

    `start_ms`/`end_ms` place it on the call clock (milliseconds since the call started):
    for the agent, the first and last frame the caller heard; for the caller, the turn
    as the provider's VAD saw it. `truncated` marks an agent line cut by a barge-in:
    its text is then what the caller heard, not what the model wrote.
    """

    t: float
    speaker: str  # "caller" | "agent" | "tool" | "system"
    text: str
    start_ms: int = 0
    end_ms: int = 0
    truncated: bool = False


@dataclass(frozen=True)
class TurnLatency:
    """Milliseconds from the caller's end of speech (as the server reported it, received
    by us) to the first model audio delta, and to the first frame of it sent to the leg."""

    to_first_delta_ms: float
    to_first_frame_ms: float
    #: When the caller's speech ended, on the call clock (ms since the call started).
    at_ms: int = 0


@dataclass(frozen=True)
class BargeIn:
    """A caller interruption: after `frames_sent` frames, `item_id` was cut at `played_ms`."""

    frames_sent: int
    item_id: str | None
    played_ms: int
    truncated: bool
    #: When it happened, on the call clock.
    at_ms: int = 0


@dataclass
class CallRecord:
    call_id: str
    leg_codec: str
    provider: str
    started_at: float
    ended_at: float | None = None
    end_reason: str = ""
    #: Who ended it: caller, agent, timeout, provider, transfer or system.
    ended_by: str = ""
    transcript: list[TranscriptLine] = field(default_factory=list)
    latencies: list[TurnLatency] = field(default_factory=list)
    barge_ins: list[BargeIn] = field(default_factory=list)
    #: Caller speech over the agent that did not interrupt it, by why: echo (the agent's
    #: own voice coming back), backchannel ("mm-hm") or short (ended too soon).
    ignored_speech: Counter[str] = field(default_factory=Counter)
    truncates: int = 0
    cancels: int = 0
    stale_deltas_dropped: int = 0
    #: Times agent speech ran dry mid-spurt (the caller heard a gap).
    underruns: int = 0
    tool_calls: int = 0
    #: Every tool the model called, with arguments, output, outcome and duration.
    tool_results: list[ToolResult] = field(default_factory=list)
    dtmf: str = ""
    #: Realtime connections replaced after a fault, and replaced at a pause before the
    #: provider's lifetime limit.
    reconnects: int = 0
    rollovers: int = 0
    errors: int = 0
    #: Bridge latency, caller side in: packet arrival → websocket write done.
    uplink_latency: LatencySamples = field(default_factory=LatencySamples)
    #: Bridge latency, agent side out: first delta of a talk spurt → its first frame sent.
    downlink_latency: LatencySamples = field(default_factory=LatencySamples)

    @property
    def duration_s(self) -> float:
        end = self.ended_at if self.ended_at is not None else self.started_at
        return max(0.0, end - self.started_at)

    def latency_summary(self) -> dict[str, float]:
        """Median and worst first-frame latency, for one-line summaries."""
        if not self.latencies:
            return {}
        frames = [lat.to_first_frame_ms for lat in self.latencies]
        return {
            "turns": float(len(frames)),
            "p50_ms": statistics.median(frames),
            "max_ms": max(frames),
        }
