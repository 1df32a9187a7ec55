"""`--find-max`: doubling, then bisecting, on a fake run with a known knee; the admission
it suggests for the machine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from telephony_agent.bench.processes import agent_settings
from telephony_agent.bench.report import Row
from telephony_agent.bench.search import find_max
from telephony_agent.commands.bench import admission_advice, callers_too_late, suggest_admission
from telephony_agent.config import load_settings


def _run_with_knee(knee: int, tried: list[int]) -> Callable[[int], Row]:
    def run(calls: int) -> Row:
        tried.append(calls)
        clean = calls <= knee
        return {
            "calls": calls,
            "answered": calls,
            "jitter_p99_ms": 1.0 if clean else 9.0,
            "gaps_over_40ms": 0,
            "lost_packets": 0,
            "reached_percent": 100.0,
            "inbound_p99_ms": 5.0,
        }

    return run


def test_doubles_to_the_first_failure_then_bisects_towards_the_knee() -> None:
    tried: list[int] = []
    best, rows = find_max(_run_with_knee(130, tried))
    assert tried[:4] == [25, 50, 100, 200]
    assert tried[4:] == [150, 125, 137]
    assert best == 125
    assert [row["within_bound"] for row in rows] == [True, True, True, False, False, True, False]


def test_a_first_run_over_the_bound_bisects_below_it() -> None:
    tried: list[int] = []
    best, _ = find_max(_run_with_knee(10, tried))
    assert tried == [25, 12, 6, 9]
    assert best == 9


def test_the_admission_suggested_is_the_share_and_cost_of_the_largest_clean_run() -> None:
    rows: list[Row] = [
        {"calls": 25, "within_bound": True, "cpu_percent": 40.0, "cpu_ms_per_call_s": 16.0},
        {"calls": 50, "within_bound": False, "cpu_percent": 95.0, "cpu_ms_per_call_s": 19.0},
        {"calls": 37, "within_bound": True, "cpu_percent": 58.3, "cpu_ms_per_call_s": 15.77},
    ]
    assert suggest_admission(rows, 37) == {"max_cpu": 0.58, "cpu_per_call": 0.0158}
    assert admission_advice(suggest_admission(rows, 37)) == (
        "admission for this machine: [admission] max_cpu = 0.58, cpu_per_call = 0.0158"
    )
    assert suggest_admission(rows, 0) == {}  # nothing was clean: nothing to suggest
    # Callers whose own tick ran late cannot measure the bound: nothing is suggested.
    rows[0]["caller_tick_late_p99_ms"] = 2.2
    assert callers_too_late(rows) == 2.2
    assert suggest_admission(rows, 37) == {}


def test_the_suggested_admission_is_a_settings_section_serve_accepts(tmp_path: Path) -> None:
    text = agent_settings(
        "ws://127.0.0.1:9/v1/realtime", 0, 1, 10, {"max_cpu": 0.58, "cpu_per_call": 0.0158}
    )
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    settings = load_settings(path, environ={})
    assert settings.admission.max_cpu == 0.58
    assert settings.admission.cpu_per_call == 0.0158
    assert "[admission]" not in agent_settings("ws://127.0.0.1:9/v1/realtime", 0, 1, 10)
