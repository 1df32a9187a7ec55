"""`telephony-agent bench` end to end, tiny: it completes and reports sane figures.

Only that it runs and what it reports is plausible is asserted (this machine's load is
not ours to predict): every call answered, nearly all caller audio reached the model,
the fidelity is a finite number, CPU was measured. The naive baseline rides along, so
its bridge is exercised too, and the agent runs as two workers sharing the calls, with
`[admission]` set from the command line.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from telephony_agent.bench.report import COLUMNS


def test_a_few_calls_for_a_few_seconds_print_the_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "telephony_agent",
            "bench",
            "--calls",
            "4",
            "--seconds",
            "3",
            "--workers",
            "2",
            "--baseline",
            "--max-cpu",
            "0.95",
            "--cpu-per-call",
            "0.02",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert all(name in lines[0] for name, _, _ in COLUMNS)
    assert lines[1].split()[:3] == ["agent", "x2", "4"] and lines[2].split()[0] == "naive"
    assert lines[3].startswith("agent / naive: CPU per call-second ")
    assert "calls held" in done.stderr
    runs = json.loads(out.read_text())["runs"]
    assert [run["label"] for run in runs] == ["agent x2", "naive"]
    assert len(runs[0]["cpu_ms_per_call_s_per_worker"]) == 2
    assert all(cpu > 0.0 for cpu in runs[0]["cpu_ms_per_call_s_per_worker"])
    for run in runs:
        assert run["answered"] == 4 and run["refused"] == 0
        assert run["reached_percent"] > 90.0
        assert math.isfinite(run["snr_db"]) and run["snr_db"] > 10.0
        assert run["cpu_ms_per_call_s"] > 0.0
        assert 0.0 <= run["jitter_p50_ms"] <= run["jitter_p99_ms"] <= run["jitter_max_ms"]
        assert 0.0 <= run["inbound_p50_ms"] <= run["inbound_p99_ms"]
        assert run["idle_rss_mb"] > 10.0
    assert runs[0]["outbound_p50_ms"] > 0.0  # the agent reports it; the naive bridge cannot
    assert runs[1]["outbound_p50_ms"] is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--calls", "0"], "--calls 0: expected at least 1"),
        (["--max-cpu", "0"], "--max-cpu 0.0: expected a share of a core, 0.01 to 64"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(arguments: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "telephony_agent", "bench", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"telephony-agent: error: {message}"
