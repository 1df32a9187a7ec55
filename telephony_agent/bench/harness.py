"""One bench run: start everything, ramp the calls up, hold, hang up, collect.

The timeline is fixed before anything is dialled and handed to the caller processes as
CLOCK_MONOTONIC instants (all processes of one host share that clock): every call's
start, the hold window, the hang-up. The harness itself only watches: it reads the
agents' CPU time at the hold's two ends and their memory in the middle, and prints a
progress line. So ramp-up and teardown never count in CPU per call-second.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from telephony_agent.bench.processes import (
    Process,
    cpu_seconds,
    start_agent,
    start_backend,
    start_naive,
)

CALLER_START_S = 2.5
"""Time for the caller processes to start (Python, numpy, codecs) before the first call."""
SETTLE_S = 1.5
"""After the last call is placed, before the hold: its setup and first media."""
HANG_UP_AFTER_S = 0.2
CALLS_PER_CALLER_PROCESS = 100
"""One asyncio process keeps 20 ms pacing for about this many calls on a shared core."""
CALLER_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class RunPlan:
    calls: int
    seconds: float
    codec: str = "pcmu"
    workers: int = 1
    naive: bool = False
    """Run the naive baseline bridge instead of the agent."""
    ramp_per_s: float = 40.0
    #: `[admission]` keys set in every agent worker's settings.
    admission: tuple[tuple[str, float], ...] = ()

    @property
    def label(self) -> str:
        if self.naive:
            return "naive"
        return "agent" if self.workers == 1 else f"agent x{self.workers}"


@dataclass
class Observed:
    """Everything one run produced, before it is turned into a row (`report.py`)."""

    plan: RunPlan
    hold: tuple[float, float]
    callers: list[dict[str, Any]]
    caller_health: list[dict[str, float]]
    talks: list[dict[str, Any]]
    server_logs: list[str]
    cpu_seconds: list[float]
    """Per agent worker (or the naive bridge), CPU time spent during the hold."""
    waited_seconds: list[float]
    """Per agent worker, time runnable but not running during the hold."""
    calls_per_server: list[int]
    idle_rss: list[int]
    hold_rss: list[int]
    backend_cpu_seconds: float
    caller_cpu_seconds: float = 0.0
    """All caller processes together, during the hold."""
    targets: dict[int, int] = field(default_factory=dict)
    """Call index -> server index."""


def run_once(plan: RunPlan, progress: Callable[[str], None]) -> Observed:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        stats_path = workdir / "backend-stats.json"
        backend, url = start_backend(workdir, stats_path)
        servers: list[Process] = []
        try:
            per_worker = math.ceil(plan.calls / plan.workers) + 10
            if plan.naive:
                servers.append(start_naive(workdir, url))
            else:
                servers.extend(
                    start_agent(workdir, url, w, plan.workers, per_worker, dict(plan.admission))
                    for w in range(plan.workers)
                )
            time.sleep(0.5)
            idle = [s.rss_bytes() for s in servers]
            observed = _drive(plan, workdir, servers, backend, progress)
            observed.idle_rss = idle
        finally:
            backend.stop()
            for server in servers:
                server.stop()
        observed.server_logs = [s.log_text() for s in servers]
        if stats_path.exists():
            observed.talks = json.loads(stats_path.read_text(encoding="utf-8"))["talks"]
        return observed


def _drive(
    plan: RunPlan,
    workdir: Path,
    servers: list[Process],
    backend: Process,
    progress: Callable[[str], None],
) -> Observed:
    start = time.monotonic() + CALLER_START_S
    ramp_end = start + plan.calls / plan.ramp_per_s
    hold_start = ramp_end + SETTLE_S
    hold_end = hold_start + plan.seconds
    targets = {i: i % len(servers) for i in range(plan.calls)}
    shards = _launch_callers(plan, workdir, servers, targets, start, (hold_start, hold_end))
    held: dict[int, dict[str, int]] = {}
    readers = [
        threading.Thread(target=_read_progress, args=(n, p, held), daemon=True)
        for n, (p, _) in enumerate(shards)
    ]
    for reader in readers:
        reader.start()
    cpu_start: list[float] = []
    wait_start: list[float] = []
    wait_end: list[float] = []
    backend_start = 0.0
    hold_rss: list[int] = []
    cpu_end: list[float] = []
    backend_end = 0.0
    callers_start = callers_end = 0.0
    while True:
        now = time.monotonic()
        if not cpu_start and now >= hold_start:
            cpu_start = [s.cpu_seconds() for s in servers]
            wait_start = [s.waited_seconds() for s in servers]
            backend_start = backend.cpu_seconds()
            callers_start = sum(cpu_seconds(p.pid) for p, _ in shards)
        if not hold_rss and now >= hold_start + plan.seconds / 2:
            hold_rss = [s.rss_bytes() for s in servers]
        if now >= hold_end:
            cpu_end = [s.cpu_seconds() for s in servers]
            wait_end = [s.waited_seconds() for s in servers]
            backend_end = backend.cpu_seconds()
            callers_end = sum(cpu_seconds(p.pid) for p, _ in shards)
            break
        phase = "ramp" if now < hold_start else "hold"
        count = sum(h.get("held", 0) for h in held.values())
        refused = sum(h.get("refused", 0) for h in held.values())
        elapsed = max(0.0, now - start)
        progress(
            f"[{plan.label}] {phase}: {count}/{plan.calls} calls held, {refused} refused,"
            f" {elapsed:.1f} s"
        )
        next_mark = min(t for t in (hold_start, hold_start + plan.seconds / 2, hold_end) if t > now)
        time.sleep(max(0.0, min(0.5, next_mark - now)))
    progress(f"[{plan.label}] hanging up, analysing what the callers heard")
    callers: list[dict[str, Any]] = []
    health: list[dict[str, float]] = []
    for popen, out in shards:
        try:
            popen.wait(CALLER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
        if popen.returncode != 0 or not out.exists():
            raise RuntimeError(f"a caller process failed (exit {popen.returncode})")
        result = json.loads(out.read_text(encoding="utf-8"))
        callers.extend(result["calls"])
        health.append(
            {
                "tick_late_p99_ms": result["tick_late_p99_ms"],
                "tick_late_max_ms": result["tick_late_max_ms"],
            }
        )
    per_server = [0] * len(servers)
    for call in callers:
        if call["state"] in ("answered", "ended"):
            per_server[targets[int(call["index"])]] += 1
    return Observed(
        plan=plan,
        hold=(hold_start, hold_end),
        callers=callers,
        caller_health=health,
        talks=[],
        server_logs=[],
        cpu_seconds=[b - a for a, b in zip(cpu_start, cpu_end, strict=True)],
        waited_seconds=[b - a for a, b in zip(wait_start, wait_end, strict=True)],
        calls_per_server=per_server,
        idle_rss=[],
        hold_rss=hold_rss,
        backend_cpu_seconds=backend_end - backend_start,
        caller_cpu_seconds=callers_end - callers_start,
        targets=targets,
    )


def _launch_callers(
    plan: RunPlan,
    workdir: Path,
    servers: list[Process],
    targets: dict[int, int],
    start: float,
    hold: tuple[float, float],
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    count = max(1, math.ceil(plan.calls / CALLS_PER_CALLER_PROCESS))
    shards: list[tuple[subprocess.Popen[bytes], Path]] = []
    for shard in range(count):
        calls = [
            {
                "index": i,
                "user": f"bench-{i}",
                "target": ["127.0.0.1", servers[targets[i]].sip_port],
                "start_at": start + i / plan.ramp_per_s,
            }
            for i in range(shard, plan.calls, count)
        ]
        spec = {
            "codec": plan.codec,
            "calls": calls,
            "hold_start": hold[0],
            "hold_end": hold[1],
            "hang_up_at": hold[1] + HANG_UP_AFTER_S,
        }
        spec_path = workdir / f"caller-{shard}.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        out = workdir / f"caller-{shard}-result.json"
        with (workdir / f"caller-{shard}.log").open("wb") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "telephony_agent.bench.caller", str(spec_path), str(out)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        shards.append((popen, out))
    return shards


def _read_progress(
    shard: int, popen: subprocess.Popen[bytes], held: dict[int, dict[str, int]]
) -> None:
    """Keep the newest progress line of one caller process (a thread per process)."""
    stream: IO[bytes] | None = popen.stdout
    if stream is None:
        return
    for line in stream:
        try:
            held[shard] = json.loads(line)
        except ValueError:
            continue
