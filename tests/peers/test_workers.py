"""`serve --workers 2`: two processes on consecutive ports, supervised by one parent.

SIPp calls each worker's SIP port; both answer with audio and keep their records in
the one SQLite file, each under its own instance name. A worker killed outright is
restarted by the parent; SIGHUP to the parent reloads every worker; SIGTERM drains and
stops them all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .agent_process import agent_environment, free_port, merged_settings, to_toml
from .test_sipp import run_sipp, sipp_failure

pytestmark = pytest.mark.skipif(
    shutil.which("sipp") is None,
    reason="sipp is not installed (Debian/Ubuntu package sip-tester; .ci/run installs it)",
)

_READY = re.compile(r"answering SIP on [^:\s]+:(\d+) .*health on http://[^:/\s]+:(\d+)/health")


class _Workers:
    """The parent process and what its workers printed."""

    def __init__(self, workdir: Path, sip_port: int, http_port: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "agent.toml"
        config.write_text(
            to_toml(merged_settings({"rtp": {"port_min": 23000, "port_max": 23099}})),
            encoding="utf-8",
        )
        self.log_path = workdir / "agent.stderr"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "telephony_agent",
                    "serve",
                    "--config",
                    str(config),
                    "--sip-listen",
                    f"127.0.0.1:{sip_port}",
                    "--http-listen",
                    f"127.0.0.1:{http_port}",
                    "--workers",
                    "2",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=agent_environment(),
                cwd=workdir,
            )

    def text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def ready(self, count: int, timeout_s: float = 20.0) -> list[tuple[int, int]]:
        """(SIP port, HTTP port) of each ready line, once `count` workers printed one."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = [(int(m[1]), int(m[2])) for m in _READY.finditer(self.text())]
            if len(found) >= count:
                return found
            assert self.process.poll() is None and time.monotonic() < deadline, self.text()
            time.sleep(0.05)

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.text().splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                record = json.loads(line)
                if record.get("event") == name:
                    found.append(record)
        return found


def _health(http_port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health", timeout=5) as r:
        data: dict[str, Any] = json.loads(r.read())
    return data


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


class _Server:
    """What `run_sipp` needs of a server: its SIP port."""

    def __init__(self, sip_port: int) -> None:
        self.sip_port = sip_port


def test_two_workers_answer_on_their_own_ports_restart_and_stop_together(
    tmp_path: Path, speech_ulaw: Path
) -> None:
    sip_port, http_port = free_port(span=2), free_port(span=2)
    workers = _Workers(tmp_path / "agent", sip_port, http_port)
    try:
        ports = sorted(workers.ready(2))
        assert ports == [(sip_port, http_port), (sip_port + 1, http_port + 1)], ports

        for index, (sip, _) in enumerate(ports):
            result = run_sipp(
                _Server(sip),  # type: ignore[arg-type]
                "basic_call.xml",
                tmp_path / f"sipp{index}",
                speech_ulaw,
            )
            assert result.returncode == 0, sipp_failure(result, tmp_path / f"sipp{index}")
        for _, http in ports:
            assert _health(http)["answered"] == 1
        legs = workers.events("rtp_leg_ended")
        assert len(legs) == 2 and all(leg["packets_in"] >= 160 for leg in legs), legs
        # Each worker has its own half of 23000-23099.
        ranges = sorted(re.findall(r"RTP on UDP (\d+-\d+)", workers.text()))
        assert ranges == ["23000-23049", "23050-23099"], ranges

        # One SQLite file, two writers, each under its own instance name.
        listing = subprocess.run(
            [sys.executable, "-m", "telephony_agent", "calls", "list", "--json"],
            cwd=tmp_path / "agent",
            env=agent_environment(),
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        calls = json.loads(listing.stdout)
        assert len(calls) == 2, calls
        assert sorted(str(c["instance"]).rsplit("/", 1)[1] for c in calls) == [
            "worker-0",
            "worker-1",
        ]

        # A worker that dies is restarted on the same ports.
        started = {e["worker"]: e["pid"] for e in workers.events("worker_started")}
        os.kill(started[1], signal.SIGKILL)
        workers.ready(3)
        (died,) = workers.events("worker_died")
        assert (died["worker"], died["exit_code"]) == (1, -signal.SIGKILL), died
        assert _health(http_port + 1)["answered"] == 0  # the new process

        # SIGHUP reaches every worker: each reloads the settings file.
        workers.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10.0
        while len(workers.events("deployment_reloaded")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(workers.events("deployment_reloaded")) == 2, workers.text()[-3000:]

        pids = [e["pid"] for e in workers.events("worker_started")]
        workers.process.send_signal(signal.SIGTERM)
        assert workers.process.wait(20) == 0, workers.text()[-3000:]
        assert not any(_alive(pid) for pid in pids), pids
        stopped = workers.events("worker_stopped")
        assert sorted((e["worker"], e["exit_code"]) for e in stopped) == [(0, 0), (1, 0)]
    finally:
        if workers.process.poll() is None:
            workers.process.kill()
            workers.process.wait()
