"""The processes a bench run measures: the backend, the agents (or the naive bridge).

Each runs as its own OS process so its CPU time in /proc is its own. The agent is
`telephony-agent serve` with a generated settings file: the local backend in
continuous-talk mode as a `custom` provider, INFO logs as JSON (the `call_ended` lines
carry the bridge's own latency figures), no records, PCM both ways (no G.711
passthrough: the resampling path is what is measured), and the per-source INVITE limits
raised because every synthetic caller shares one loopback address.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

READY = re.compile(r"answering SIP on [^:\s]+:(\d+) ")
"""The line `serve` prints once it answers (the naive bridge prints the same)."""
READY_TIMEOUT_S = 30.0
SERVE_PORTS = re.compile(r"answering SIP on [^:\s]+:(\d+) .*health on http://[^:/\s]+:(\d+)/health")
STOP_TIMEOUT_S = 15.0
RTP_PORT_BASE = 61000
RTP_PORT_SPAN = 4000
"""Agents take RTP ports from 61000-64999, above Linux's ephemeral range, split per worker."""
_KEY_VARIABLES = ("TELEPHONY_AGENT_API_KEY", "OPENAI_API_KEY", "YANDEX_API_KEY")


@dataclass
class Process:
    """One started process: its handle, the log it writes and the SIP port it answers on."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    sip_port: int = 0

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.popen.pid)

    def waited_seconds(self) -> float:
        """Time its main thread was runnable but waiting for a CPU (`/proc/PID/schedstat`).

        On a shared machine this is what tells "the agent was slow" from "the agent was
        not given a core".
        """
        try:
            fields = Path(f"/proc/{self.popen.pid}/schedstat").read_text().split()
        except FileNotFoundError:
            return 0.0
        return int(fields[1]) / 1e9

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it does not exit in time; the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(STOP_TIMEOUT_S)
        return int(self.popen.returncode)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (the fields after its name are fixed)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except FileNotFoundError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def environment() -> dict[str, str]:
    """The parent's environment without provider keys: nothing here may reach a real model."""
    env = {k: v for k, v in os.environ.items() if k not in _KEY_VARIABLES}
    env = {k: v for k, v in env.items() if not k.startswith("TELEPHONY_AGENT_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_ports(stderr: IO[str]) -> tuple[int, int]:
    """The SIP and HTTP ports `serve` announces, read from its stderr up to the ready
    line (for a caller that goes on reading the stream itself)."""
    while True:
        line = stderr.readline()
        if not line:
            raise RuntimeError("serve exited before it was ready")
        match = SERVE_PORTS.search(line)
        if match is not None:
            return int(match.group(1)), int(match.group(2))


def wait_for_port(port: int, timeout_s: float = 15.0) -> None:
    """Until something accepts TCP connections on loopback `port`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _spawn(name: str, command: list[str], workdir: Path) -> Process:
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment(),
            cwd=workdir,
        )
    return Process(name, popen, log_path)


def start_backend(workdir: Path, stats_path: Path) -> tuple[Process, str]:
    """The local backend in continuous-talk mode; returns it and its websocket URL."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "telephony_agent",
        "local-backend",
        "--port",
        str(port),
        "--behaviour",
        "continuous",
        "--stats-out",
        str(stats_path),
    ]
    process = _spawn("backend", command, workdir)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"local backend exited: {process.log_text()[-2000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"ws://127.0.0.1:{port}/v1/realtime"
        time.sleep(0.05)
    process.stop()
    raise RuntimeError("local backend did not listen in time")


def agent_settings(
    backend_url: str,
    worker: int,
    workers: int,
    max_calls: int,
    admission: Mapping[str, float] | None = None,
) -> str:
    """The settings file of one agent worker (see the module docstring for why each key);
    `admission`: `[admission]` keys to set, e.g. the ones `--find-max` suggests."""
    span = RTP_PORT_SPAN // workers
    low = RTP_PORT_BASE + worker * span
    return (
        "[provider]\n"
        'name = "custom"\n'
        f'url = "{backend_url}"\n'
        'dialect = "ga"\n'
        'g711_passthrough = "off"\n'
        "[agent]\n"
        'instructions = "{caller}"\n'
        'transcription_model = "none"\n'
        "idle_reprompt_s = 0\n"
        "[sip]\n"
        'transports = "udp"\n'
        f"max_calls = {max_calls}\n"
        "max_pending_per_source = 200\n"
        "max_pending_calls = 200\n"
        "invite_rate_per_source = 500.0\n"
        "[rtp]\n"
        f"port_min = {low}\n"
        f"port_max = {low + span - 1}\n"
        "[http]\n"
        'listen = "127.0.0.1:0"\n'
        "[records]\n"
        "enabled = false\n"
        "[server]\n"
        "drain_timeout_s = 0\n"
        'drain_goodbye_instructions = ""\n'
        "[log]\n"
        'level = "info"\n'
        'format = "json"\n'
    ) + _admission_section(admission or {})


def _admission_section(admission: Mapping[str, float]) -> str:
    if not admission:
        return ""
    return "[admission]\n" + "".join(f"{key} = {value!r}\n" for key, value in admission.items())


def start_agent(
    workdir: Path,
    backend_url: str,
    worker: int,
    workers: int,
    max_calls: int,
    admission: Mapping[str, float] | None = None,
) -> Process:
    """One `serve` worker on its own SIP port and RTP range."""
    config = workdir / f"agent-{worker}.toml"
    settings = agent_settings(backend_url, worker, workers, max_calls, admission)
    config.write_text(settings, encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "telephony_agent",
        "serve",
        "--config",
        str(config),
        "--sip-listen",
        "127.0.0.1:0",
    ]
    return wait_ready(_spawn(f"agent-{worker}", command, workdir))


def start_naive(workdir: Path, backend_url: str) -> Process:
    """The naive baseline bridge (`naive_bridge.py`) on a free SIP port."""
    command = [sys.executable, "-m", "telephony_agent.bench.naive_bridge", backend_url]
    return wait_ready(_spawn("naive", command, workdir))


def wait_ready(process: Process) -> Process:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        match = READY.search(process.log_text())
        if match is not None:
            process.sip_port = int(match.group(1))
            return process
        if process.popen.poll() is not None:
            break
        time.sleep(0.05)
    tail = process.log_text()[-2000:]
    process.stop()
    raise RuntimeError(f"{process.name} did not become ready: {tail}")
