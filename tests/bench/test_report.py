"""From observations to a row: the joins between callers, backend and agent logs."""

from __future__ import annotations

import json
import math

import numpy as np

from telephony_agent.bench.harness import Observed, RunPlan
from telephony_agent.bench.report import median_row, summarise, table, to_json, within_bound


def _observed(appended_fraction: float = 1.0) -> Observed:
    start = 1000.0
    sends = start + np.arange(300) * 0.02
    callers = []
    talks = []
    for index in range(2):
        callers.append(
            {
                "index": index,
                "user": f"bench-{index}",
                "state": "ended",
                "status": 200,
                "sent_s": 6.0,
                "send_times": sends.tolist(),
                "jitter_us": [100, 200, 300, 5000],
                "gaps": 0,
                "expected": 250,
                "lost": 0,
                "snr_db": 40.0 + index,
                "clicks": 0,
            }
        )
        count = int(300 * appended_fraction)
        talks.append(
            {
                "tag": f"You are bench-{index}",
                "arrivals": (sends[:count] + 0.004).tolist(),
                "seconds": [0.02] * count,
            }
        )
    callers.append({**callers[0], "index": 2, "state": "refused", "status": 486})
    ended = json.dumps({"event": "call_ended", "downlink_p50_ms": 30.0, "downlink_p99_ms": 50.0})
    return Observed(
        plan=RunPlan(calls=3, seconds=4.0),
        hold=(start + 1.0, start + 5.0),
        callers=callers,
        caller_health=[{"tick_late_p99_ms": 0.5, "tick_late_max_ms": 1.0}],
        talks=talks,
        server_logs=[ended + "\n" + ended],
        cpu_seconds=[0.4],
        waited_seconds=[0.04],
        calls_per_server=[2],
        idle_rss=[100 * 2**20],
        hold_rss=[102 * 2**20],
        backend_cpu_seconds=0.2,
    )


def test_a_row_joins_callers_backend_and_agent_figures() -> None:
    row = summarise(_observed())
    assert (row["answered"], row["refused"]) == (2, 1)
    assert math.isclose(row["cpu_ms_per_call_s"], 50.0)  # 0.4 s / (2 calls x 4 s)
    assert math.isclose(row["cpu_percent"], 10.0)
    assert math.isclose(row["cpu_wait_percent_per_worker"][0], 1.0)
    assert math.isclose(row["inbound_p50_ms"], 4.0) and math.isclose(row["inbound_p99_ms"], 4.0)
    assert math.isclose(row["reached_percent"], 100.0)
    assert row["jitter_max_ms"] == 5.0
    assert (row["outbound_p50_ms"], row["outbound_p99_ms"]) == (30.0, 50.0)
    assert row["snr_db"] == 40.5
    assert math.isclose(row["rss_per_call_mb"], 1.0)
    assert not within_bound(row)  # a refused call and a 5 ms jitter spike


def test_caller_audio_that_never_arrived_lowers_reached() -> None:
    row = summarise(_observed(appended_fraction=0.5))
    assert math.isclose(row["reached_percent"], 50.0 * 300 * 0.02 / 6.0)


def test_medians_of_repeated_runs_and_a_table_with_missing_figures() -> None:
    rows = [summarise(_observed()) for _ in range(3)]
    rows[1]["cpu_ms_per_call_s"] = 10.0
    rows[2]["outbound_p50_ms"] = math.nan
    merged = median_row(rows)
    assert merged["runs"] == 3 and merged["cpu_ms_per_call_s"] == 50.0
    merged["outbound_p99_ms"] = math.nan
    text = table([merged])
    assert text.splitlines()[1].split()[0] == "agent"
    assert " - " in text
    assert json.loads(to_json([merged]))["runs"][0]["outbound_p99_ms"] is None
