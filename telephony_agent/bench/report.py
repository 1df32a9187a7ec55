"""From what a run observed to one row of figures, and rows to the table and JSON.

Where each figure comes from:

* pacing jitter, gaps and loss: at the callers, from kernel receive timestamps and RTP
  sequence numbers of the packets that arrived during the hold;
* inbound latency (RTP in -> websocket): end to end, the backend's arrival time of each
  append against the caller's send time of the packet holding its newest audio
  (`measures.inbound_latency`); backend queueing is included;
* outbound latency (model delta -> first RTP out): the agent's own `call_ended` figures
  (`downlink_p50_ms`/`downlink_p99_ms`, first delta of a talk spurt to its first frame
  on the leg), median over calls; the naive bridge has no such figure;
* reached-model: seconds of caller audio the backend received / seconds the callers sent;
* fidelity: median over calls of each call's segmental SNR against the ideal rendering,
  and of its click count (`measures.fidelity`);
* CPU and memory: /proc of each agent process over the hold only.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from telephony_agent.bench import measures
from telephony_agent.bench.harness import Observed

Row = dict[str, Any]

_CALLER_TAG = re.compile(r"bench-(\d+)")
MB = 1024 * 1024

BOUND = {
    "jitter_p99_ms": 2.0,
    "inbound_p99_ms": 20.0,
    "reached_percent": 99.9,
}
"""The clean-call bound of `--find-max`: also no gaps, no loss and no refused call."""


def summarise(observed: Observed) -> Row:
    plan = observed.plan
    start, end = observed.hold
    answered = [c for c in observed.callers if c["state"] in ("answered", "ended")]
    # Not answered: refused outright, or still waiting when the hold ended.
    refused = len(observed.callers) - len(answered)
    unanswered = sum(1 for c in observed.callers if c["state"] == "calling")
    jitter = np.concatenate(
        [np.asarray(c["jitter_us"], dtype=np.float64) / 1000.0 for c in answered] or [np.zeros(0)]
    )
    expected = sum(int(c["expected"]) for c in answered)
    lost = sum(int(c["lost"]) for c in answered)
    talks = _talks_by_call(observed.talks)
    inbound: list[np.ndarray[Any, np.dtype[np.float64]]] = []
    appended = 0.0
    sent = 0.0
    for call in answered:
        arrivals, seconds = talks.get(int(call["index"]), (np.zeros(0), np.zeros(0)))
        appended += float(seconds.sum())
        sent += float(call["sent_s"])
        latency = measures.inbound_latency(
            np.asarray(call["send_times"], dtype=np.float64), arrivals, seconds
        )
        window = arrivals[: latency.size]
        inbound.append(latency[(window >= start) & (window <= end)] * 1000.0)
    pooled = np.concatenate(inbound or [np.zeros(0)])
    outbound = _agent_latency(observed.server_logs, "downlink")
    uplink = _agent_latency(observed.server_logs, "uplink")
    seconds_held = plan.seconds
    cpu_ms = [
        cpu * 1000.0 / (calls * seconds_held) if calls else math.nan
        for cpu, calls in zip(observed.cpu_seconds, observed.calls_per_server, strict=True)
    ]
    cpu_percent = [cpu * 100.0 / seconds_held for cpu in observed.cpu_seconds]
    waited_percent = [wait * 100.0 / seconds_held for wait in observed.waited_seconds]
    rss_per_call = [
        (hold - idle) / calls / MB if calls else math.nan
        for hold, idle, calls in zip(
            observed.hold_rss, observed.idle_rss, observed.calls_per_server, strict=True
        )
    ]
    snrs = [float(c["snr_db"]) for c in answered if not _nan(c["snr_db"])]
    return {
        "label": plan.label,
        "codec": plan.codec,
        "workers": plan.workers,
        "calls": plan.calls,
        "answered": len(answered),
        "refused": refused,
        "unanswered": unanswered,
        "hold_s": seconds_held,
        "cpu_ms_per_call_s": _mean(cpu_ms),
        "cpu_percent": _mean(cpu_percent),
        "cpu_ms_per_call_s_per_worker": cpu_ms,
        "cpu_percent_per_worker": cpu_percent,
        "cpu_wait_percent_per_worker": waited_percent,
        "jitter_p50_ms": measures.percentile(jitter, 50),
        "jitter_p99_ms": measures.percentile(jitter, 99),
        "jitter_max_ms": float(jitter.max()) if jitter.size else math.nan,
        "gaps_over_40ms": sum(int(c["gaps"]) for c in answered),
        "lost_packets": lost,
        "loss_percent": 100.0 * lost / expected if expected else math.nan,
        "inbound_p50_ms": measures.percentile(pooled, 50),
        "inbound_p99_ms": measures.percentile(pooled, 99),
        "outbound_p50_ms": outbound[0],
        "outbound_p99_ms": outbound[1],
        "agent_uplink_p50_ms": uplink[0],
        "agent_uplink_p99_ms": uplink[1],
        "reached_percent": 100.0 * appended / sent if sent else math.nan,
        "snr_db": statistics.median(snrs) if snrs else math.nan,
        "clicks": statistics.median(int(c["clicks"]) for c in answered) if answered else math.nan,
        "rss_per_call_mb": _mean(rss_per_call),
        "idle_rss_mb": _mean([r / MB for r in observed.idle_rss]),
        "backend_cpu_percent": observed.backend_cpu_seconds * 100.0 / seconds_held,
        "callers_cpu_percent": observed.caller_cpu_seconds * 100.0 / seconds_held,
        "caller_tick_late_p99_ms": max(
            (h["tick_late_p99_ms"] for h in observed.caller_health), default=math.nan
        ),
    }


def within_bound(row: Row) -> bool:
    """Clean calls: every call answered, pacing, no gaps or loss, all audio in, fast."""
    return bool(
        row["answered"] == row["calls"]
        and row["jitter_p99_ms"] <= BOUND["jitter_p99_ms"]
        and row["gaps_over_40ms"] == 0
        and row["lost_packets"] == 0
        and row["reached_percent"] >= BOUND["reached_percent"]
        and row["inbound_p99_ms"] <= BOUND["inbound_p99_ms"]
    )


def median_row(rows: Sequence[Row]) -> Row:
    """Medians of the numeric figures of repeated runs (lists element-wise)."""
    merged: Row = dict(rows[0])
    merged["runs"] = len(rows)
    for key, value in rows[0].items():
        if isinstance(value, (bool, str)):
            continue
        if isinstance(value, list):
            merged[key] = [
                _median([r[key][i] for r in rows if i < len(r[key])]) for i in range(len(value))
            ]
        elif isinstance(value, int):
            merged[key] = round(_median([r[key] for r in rows]))
        elif isinstance(value, float):
            merged[key] = _median([r[key] for r in rows])
    return merged


COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("bridge", "label", "{}"),
    ("calls", "calls", "{:.0f}"),
    ("refused", "refused", "{:.0f}"),
    ("CPU ms/call-s", "cpu_ms_per_call_s", "{:.2f}"),
    ("CPU %", "cpu_percent", "{:.0f}"),
    ("jitter p50", "jitter_p50_ms", "{:.2f}"),
    ("p99", "jitter_p99_ms", "{:.2f}"),
    ("max", "jitter_max_ms", "{:.1f}"),
    ("gaps>40ms", "gaps_over_40ms", "{:.0f}"),
    ("loss %", "loss_percent", "{:.2f}"),
    ("in p50", "inbound_p50_ms", "{:.1f}"),
    ("in p99", "inbound_p99_ms", "{:.1f}"),
    ("out p50", "outbound_p50_ms", "{:.1f}"),
    ("out p99", "outbound_p99_ms", "{:.1f}"),
    ("reached %", "reached_percent", "{:.2f}"),
    ("SNR dB", "snr_db", "{:.1f}"),
    ("clicks", "clicks", "{:.0f}"),
    ("RSS/call MB", "rss_per_call_mb", "{:.2f}"),
    ("idle RSS MB", "idle_rss_mb", "{:.0f}"),
    ("callers late p99", "caller_tick_late_p99_ms", "{:.1f}"),
)


def table(rows: Sequence[Row]) -> str:
    """One line per run; latencies and jitter in ms; `-` where a figure was not measured."""
    header = [name for name, _, _ in COLUMNS]
    body = [[_cell(row.get(key), fmt) for _, key, fmt in COLUMNS] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.extend("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in body)
    return "\n".join(lines)


def ratios(ours: Row, naive: Row) -> str:
    """The side-by-side line `--baseline` prints."""
    parts = []
    for name, key in (
        ("CPU per call-second", "cpu_ms_per_call_s"),
        ("CPU %", "cpu_percent"),
        ("jitter p99", "jitter_p99_ms"),
        ("inbound p99", "inbound_p99_ms"),
        ("RSS per call", "rss_per_call_mb"),
    ):
        a, b = ours.get(key), naive.get(key)
        if isinstance(a, int | float) and isinstance(b, int | float) and b and not _nan(b):
            parts.append(f"{name} {a / b:.2f}")
    calls = f"calls answered {ours['answered']}/{naive['answered']}"
    return "agent / naive: " + ", ".join([*parts, calls])


def to_json(rows: Sequence[Row], **extra: Any) -> str:
    """The rows (and e.g. the ratios) as strict JSON: a figure not measured is null."""
    return json.dumps(_strict({"runs": list(rows), **extra}), indent=2, allow_nan=False)


def _talks_by_call(
    talks: list[dict[str, Any]],
) -> dict[int, tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.float64]]]]:
    """Each call's appends (arrival, seconds), merged over its connections, in order."""
    grouped: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for talk in talks:
        match = _CALLER_TAG.search(str(talk.get("tag", "")))
        if match is None:
            continue
        grouped[int(match.group(1))].extend(zip(talk["arrivals"], talk["seconds"], strict=True))
    result = {}
    for index, pairs in grouped.items():
        pairs.sort()
        data = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
        result[index] = (data[:, 0], data[:, 1])
    return result


def _agent_latency(logs: list[str], name: str) -> tuple[float, float]:
    """Median over calls of the agent's own per-call p50 and p99 (its call_ended lines)."""
    p50: list[float] = []
    p99: list[float] = []
    for text in logs:
        for line in text.splitlines():
            if '"call_ended"' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if f"{name}_p50_ms" in record:
                p50.append(float(record[f"{name}_p50_ms"]))
                p99.append(float(record[f"{name}_p99_ms"]))
    return (_median(p50), _median(p99))


def _mean(values: Sequence[float]) -> float:
    real = [v for v in values if not _nan(v)]
    return sum(real) / len(real) if real else math.nan


def _median(values: Sequence[Any]) -> float:
    real = [float(v) for v in values if isinstance(v, int | float) and not _nan(v)]
    return statistics.median(real) if real else math.nan


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _cell(value: Any, fmt: str) -> str:
    if value is None or _nan(value):
        return "-"
    return fmt.format(value)


def _strict(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
