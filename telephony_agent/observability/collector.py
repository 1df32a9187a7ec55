"""`/metrics`: a prometheus-client collector that reads the service's own counters.

Why a custom collector read at scrape time: the switchboard, the SIP endpoint, the RTP
legs, the Realtime sessions and the records writer already count what matters, on the
paths that do the work. Copying them into client-library metrics as they change would
put locks and calls on the media path; reading them when Prometheus asks costs nothing
between scrapes. The process metrics (CPU, memory, open files) are the client
library's own default collectors.

Everything here runs on the event loop, like the hooks that fill `CallMetrics`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from telephony_agent.observability.buckets import LATENESS_BUCKETS_S, Buckets
from telephony_agent.observability.call_metrics import CallMetrics, realtime_errors
from telephony_agent.observability.legs import rtp_counters
from telephony_agent.observability.sip_traffic import SipTraffic
from telephony_agent.switchboard import Switchboard

__all__ = ["PREFIX", "AgentCollector", "MetricsSources", "build_registry"]

PREFIX = "telephony_agent_"

#: RTP counters as metrics: (field, metric name without prefix, help).
_RTP_METRICS = (
    ("lost", "rtp_packets_lost", "RTP packets never received (skipped by the reorder window)"),
    ("late", "rtp_packets_late", "RTP packets that arrived after their place was filled"),
    ("concealed_frames", "rtp_frames_concealed", "20 ms frames synthesised for lost packets"),
    (
        "foreign_source",
        "rtp_packets_foreign_source",
        "RTP/RTCP packets dropped because they came from another address than the peer's",
    ),
    ("malformed", "rtp_packets_malformed", "datagrams on RTP ports that were not valid RTP"),
    ("duplicates", "rtp_packets_duplicate", "copies of an RTP packet already received"),
)


@dataclass
class MetricsSources:
    """Where the numbers come from; everything but the switchboard is optional."""

    board: Switchboard
    calls: CallMetrics
    sip_traffic: SipTraffic | None = None
    #: The SIP endpoint's counters (received, sent, malformed_dropped, ...).
    sip_endpoint: Callable[[], Mapping[str, float]] | None = None
    #: Records and recordings counters (`Keeping.health`).
    records: Callable[[], Mapping[str, object]] | None = None
    #: Registrations with providers, by name: True when registered.
    registrations: Callable[[], Mapping[str, bool]] | None = None


class AgentCollector(Collector):
    """Turns the service's counters into metric families on every scrape."""

    def __init__(self, sources: MetricsSources) -> None:
        self.sources = sources
        self._lateness = Buckets(LATENESS_BUCKETS_S)
        self._lateness_seen = 0

    def collect(self) -> Iterable[Metric]:
        yield from self._calls()
        yield from self._turns_and_tools()
        yield from self._media()
        yield from self._realtime()
        yield from self._sip()
        yield from self._records()

    # ------------------------------------------------------------------ calls

    def _calls(self) -> Iterable[Metric]:
        board, calls = self.sources.board, self.sources.calls
        active = GaugeMetricFamily(
            PREFIX + "calls_active",
            "calls running now (answered, not yet ended)",
            labels=["direction", "kind", "profile"],
        )
        running: Counter[tuple[str, str, str]] = Counter(
            (live.request.direction, live.request.kind, live.profile.name)
            for live in board.live_calls()
        )
        for key in set(running) | set(calls.offered):
            active.add_metric(list(key), running.get(key, 0))
        yield active
        yield _gauge(
            "call_slots_used", "calls holding a slot (ringing or running)", board.active_calls
        )
        yield _gauge("call_slots", "the capacity, sip.max_calls", board.max_calls)
        yield _gauge("draining", "1 while the service drains before stopping", int(board.draining))
        yield from self._admission()
        yield _counter(
            "calls_offered",
            "calls admitted, by direction, front door and profile",
            ["direction", "kind", "profile"],
            calls.offered,
        )
        yield _counter(
            "calls",
            "calls that ran and ended, by direction, front door, profile and end reason",
            ["direction", "kind", "profile", "end_reason"],
            calls.ended,
        )
        yield _counter(
            "calls_abandoned",
            "admitted calls that never ran (cancelled, model unreachable, bad offer)",
            ["direction", "kind", "profile", "reason"],
            calls.abandoned,
        )
        yield _counter(
            "calls_refused",
            "calls refused (over_capacity, overloaded, draining, unknown_profile)",
            ["direction", "kind", "reason"],
            calls.refused,
        )
        yield _histogram("call_duration_seconds", "length of ended calls", calls.call_duration)

    def _admission(self) -> Iterable[Metric]:
        """The overload gate: its state, what it measured and what it has left."""
        board = self.sources.board
        gate = board.overload
        yield _gauge(
            "overloaded", "1 while measured load refuses every new call", int(board.overloaded)
        )
        yield _counter("overloads", "times the service entered overload", [], {(): gate.overloads})
        yield _gauge(
            "admission_headroom_calls",
            "calls that still fit under admission.max_cpu by the measured cost per call",
            gate.headroom(board.active_calls),
        )
        yield _gauge(
            "admission_cpu_per_call",
            "CPU one call costs, as a share of one core, measured live",
            gate.cpu_per_call,
        )
        last = gate.last
        if last is not None:
            yield _gauge(
                "process_cpu_share", "process CPU over the last second (1 = one core)", last.cpu
            )
            yield _gauge(
                "media_clock_lateness_p99_seconds",
                "p99 of the media clock's lateness over the last second",
                last.lateness_p99_ms / 1000.0,
            )

    def _turns_and_tools(self) -> Iterable[Metric]:
        calls = self.sources.calls
        yield _histogram(
            "turn_first_audio_seconds",
            "end of caller speech (as the provider reported it) to the first model audio",
            calls.turn_to_first_audio,
        )
        yield _histogram(
            "turn_first_frame_seconds",
            "end of caller speech to the first frame of the answer sent to the caller",
            calls.turn_to_first_frame,
        )
        yield _counter(
            "barge_ins", "times a caller interrupted the agent", [], {(): calls.barge_ins}
        )
        yield _counter("dtmf_digits", "keypad digits received", [], {(): calls.dtmf_digits})
        yield _counter(
            "tool_calls", "tool calls by tool and outcome", ["tool", "outcome"], calls.tool_calls
        )
        family = HistogramMetricFamily(
            PREFIX + "tool_call_duration_seconds", "how long tool calls took", labels=["tool"]
        )
        for name, buckets in sorted(calls.tool_duration.items()):
            family.add_metric([name], buckets.cumulative(), buckets.total)
        yield family

    # ------------------------------------------------------------------ media

    def _media(self) -> Iterable[Metric]:
        board, calls = self.sources.board, self.sources.calls
        totals: Counter[str] = Counter(calls.rtp_ended)
        for live in board.live_calls():
            counters = rtp_counters(live.call.leg)
            if counters is not None:
                totals.update(counters)
        packets = CounterMetricFamily(
            PREFIX + "rtp_packets", "RTP packets received and sent", labels=["direction"]
        )
        packets.add_metric(["in"], totals["packets_in"])
        packets.add_metric(["out"], totals["packets_out"])
        yield packets
        for name, metric, doc in _RTP_METRICS:
            yield _counter(metric, doc, [], {(): totals[name]})
        clock = board.clock
        self._fold_lateness()
        yield _histogram(
            "media_tick_lateness_seconds",
            "how late the 20 ms media tick ran (outbound pacing)",
            self._lateness,
        )
        yield _counter(
            "media_ticks_skipped",
            "media ticks skipped because the loop fell behind",
            [],
            {(): clock.skipped_ticks},
        )
        yield _counter(
            "playout_underruns",
            "agent speech that ran dry mid-spurt (ended calls)",
            [],
            {(): board.stats.playout_underruns},
        )

    def _fold_lateness(self) -> None:
        """Add the ticks recorded since the last scrape (the clock keeps a ring of them)."""
        clock = self.sources.board.clock
        count = clock.lateness_count
        new = count - self._lateness_seen if count >= self._lateness_seen else count
        self._lateness_seen = count
        if new <= 0:
            return
        window = clock.lateness_ms
        self._lateness.observe_many(window[-min(new, window.size) :] / 1000.0)

    # ------------------------------------------------------------------ Realtime

    def _realtime(self) -> Iterable[Metric]:
        board, calls = self.sources.board, self.sources.calls
        states: Counter[str] = Counter()
        reconnects = calls.realtime_reconnects_ended
        errors: Counter[str] = Counter(calls.realtime_errors_ended)
        for live in board.live_calls():
            session = live.call.session
            states[session.state] += 1
            stats = session.stats
            reconnects += stats.get("reconnects", 0)
            errors.update(realtime_errors(stats))
        sessions = GaugeMetricFamily(
            PREFIX + "realtime_sessions", "Realtime sessions of live calls", labels=["state"]
        )
        for state in ("open", "reconnecting"):
            sessions.add_metric([state], states.get(state, 0))
        yield sessions
        yield _counter(
            "realtime_sessions_started",
            "Realtime sessions that carried a call",
            [],
            {(): calls.realtime_sessions},
        )
        yield _counter("realtime_reconnects", "Realtime reconnections", [], {(): reconnects})
        yield _counter(
            "realtime_errors",
            "error events from the provider, by code",
            ["code"],
            {(code,): n for code, n in errors.items()},
        )
        yield _histogram(
            "realtime_session_duration_seconds",
            "Realtime session length, from connecting (while ringing) to the call's end",
            calls.realtime_session_duration,
        )

    # ------------------------------------------------------------------ SIP

    def _sip(self) -> Iterable[Metric]:
        traffic = self.sources.sip_traffic
        if traffic is not None:
            yield _counter(
                "sip_requests",
                "SIP requests received (retransmissions absorbed), by method",
                ["method"],
                {(m,): n for m, n in traffic.requests.items()},
            )
            yield _counter(
                "sip_responses",
                "SIP responses sent, by request method and status code",
                ["method", "code"],
                {(m, str(code)): n for (m, code), n in traffic.responses.items()},
            )
        endpoint = self.sources.sip_endpoint
        if endpoint is not None:
            stats = endpoint()
            for key, name, doc in (
                ("received", "sip_messages_received", "SIP messages received"),
                ("sent", "sip_messages_sent", "SIP messages sent (retransmissions included)"),
                ("malformed_dropped", "sip_malformed_dropped", "unparsable SIP messages dropped"),
                ("bad_requests_answered", "sip_bad_requests", "malformed requests answered 4xx"),
                ("send_errors", "sip_send_errors", "SIP messages that could not be sent"),
            ):
                yield _counter(name, doc, [], {(): float(stats.get(key, 0))})
        registrations = self.sources.registrations
        if registrations is not None:
            up = GaugeMetricFamily(
                PREFIX + "registration_up",
                "1 while the registration with a provider is in force",
                labels=["registration"],
            )
            for name, ok in sorted(registrations().items()):
                up.add_metric([name], int(ok))
            yield up

    # ------------------------------------------------------------------ records

    def _records(self) -> Iterable[Metric]:
        records = self.sources.records
        if records is None:
            return
        health = records()
        if "records_queue_depth" in health:
            yield _gauge(
                "records_queue_depth",
                "call events waiting for the records database",
                _number(health["records_queue_depth"]),
            )
        for key, name, doc in (
            ("records_written", "records_written", "call events written to the database"),
            ("records_dropped", "records_dropped", "call events lost (queue full or closed)"),
            (
                "records_failed_attempts",
                "records_write_failures",
                "database writes that failed and were retried",
            ),
            ("recordings_dropped_chunks", "recordings_dropped_chunks", "recording chunks lost"),
            (
                "recordings_write_failures",
                "recordings_write_failures",
                "recordings stopped by a write error",
            ),
        ):
            if key in health:
                yield _counter(name, doc, [], {(): _number(health[key])})


def build_registry(sources: MetricsSources) -> CollectorRegistry:
    """A registry of our collector and the client library's process collectors.

    Its own registry, not the global one: tests and several services in one process
    must not see each other's numbers.
    """
    registry = CollectorRegistry(auto_describe=False)
    for default in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(_Borrowed(default))
    registry.register(AgentCollector(sources))
    return registry


class _Borrowed(Collector):
    """A default collector shown in our registry too (it stays in the global one)."""

    def __init__(self, inner: Collector) -> None:
        self._inner = inner

    def collect(self) -> Iterable[Metric]:
        return self._inner.collect()


# ---------------------------------------------------------------------- helpers


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value)


def _counter(
    name: str,
    doc: str,
    labels: list[str],
    values: Mapping[Any, float],
) -> CounterMetricFamily:
    """A counter family; `values` maps label-value tuples (in `labels` order) to totals."""
    family = CounterMetricFamily(PREFIX + name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def _histogram(name: str, doc: str, buckets: Buckets) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        PREFIX + name, doc, buckets=buckets.cumulative(), sum_value=buckets.total
    )
