"""`telephony-agent serve` as a real subprocess, driven by real SIP peers.

Why a subprocess and not the in-process server: these tests check what a
deployed agent does for a third-party stack (SIPp, baresip), command line,
settings file, signals and health endpoint included.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READY_PREFIX = "telephony-agent: answering SIP on"
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0

_READY_RE = re.compile(r"answering SIP on [^:\s]+:(\d+) .*health on http://[^:/\s]+:(\d+)/health")

#: Environment variables that would point the agent at a real provider.
_KEY_VARIABLES = ("TELEPHONY_AGENT_API_KEY", "OPENAI_API_KEY", "YANDEX_API_KEY")

Sections = Mapping[str, Mapping[str, Any]]

#: Every server these tests start: loopback, UDP, the local echo backend, JSON logs.
BASE_SETTINGS: dict[str, dict[str, Any]] = {
    "provider": {"name": "local"},
    "sip": {"transports": "udp", "max_calls": 60, "t1_ms": 500},
    "rtp": {"port_min": 20000, "port_max": 20999, "inactivity_timeout_s": 30},
    "log": {"level": "info", "format": "json"},
    "local": {"behaviour": "echo"},
    # Teardown stops servers with calls still up: hang them up at once, as before drains.
    "server": {"drain_timeout_s": 0, "drain_goodbye_instructions": ""},
}


def merged_settings(overrides: Sections) -> dict[str, dict[str, Any]]:
    settings = {name: dict(values) for name, values in BASE_SETTINGS.items()}
    for name, values in overrides.items():
        settings.setdefault(name, {}).update(values)
    return settings


def to_toml(settings: Sections) -> str:
    """The few TOML shapes a settings file needs: tables of scalars and arrays."""
    lines: list[str] = []
    for name, values in settings.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"not a TOML scalar or array: {value!r}")


def free_port(kind: int = socket.SOCK_DGRAM, span: int = 1) -> int:
    """A loopback port with `span` consecutive ports free (SIPp's media wants a few)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + span > 65535:
            continue
        if all(_is_free(port) for port in range(base, base + span)):
            return base
    raise RuntimeError("no free loopback port range")


def _is_free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def agent_environment(provider: str = "local") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _KEY_VARIABLES}
    env = {k: v for k, v in env.items() if not k.startswith("TELEPHONY_AGENT_")}
    env["TELEPHONY_AGENT_PROVIDER_NAME"] = provider
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class AgentServer:
    """A running `telephony-agent serve`: its SIP and health ports, process and stderr log."""

    sip_port: int
    http_port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    config_path: Path

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.http_port}/health"
        with urllib.request.urlopen(url, timeout=5) as response:
            data: dict[str, Any] = json.loads(response.read())
        return data

    def wait_health(self, predicate: Any, timeout_s: float = 10.0) -> dict[str, Any]:
        """Poll /health until `predicate(health)` holds; return the last reading either way."""
        deadline = time.monotonic() + timeout_s
        while True:
            current = self.health()
            if predicate(current) or time.monotonic() > deadline:
                return current
            time.sleep(0.1)

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The server's JSON log records (optionally only those named `event`)."""
        records: list[dict[str, Any]] = []
        for line in self.log_text().splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and (event is None or record.get("event") == event):
                records.append(record)
        return records

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (from /proc)."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text(encoding="ascii")
        # The command name (field 2) may contain spaces; the fields after ")" are fixed.
        fields = stat.rsplit(")", 1)[1].split()
        utime, stime = int(fields[11]), int(fields[12])
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        """SIGTERM (the agent hangs up its calls and exits 0); SIGKILL if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        return int(self.process.returncode)


def start_agent(
    workdir: Path, overrides: Sections, extra_toml: str = "", provider: str = "local"
) -> AgentServer:
    """Write a settings file into `workdir`, start serve on free ports, wait until it is ready.

    `extra_toml` is appended to the file as written (arrays of tables such as
    `[[profiles]]`, which the section overrides cannot express). `provider` is what
    serve is told to use (`custom` with `provider.url` reaches a backend the test runs).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "agent.toml"
    config.write_text(to_toml(merged_settings(overrides)) + extra_toml, encoding="utf-8")
    log_path = workdir / "agent.stderr"
    command = [
        sys.executable,
        "-m",
        "telephony_agent",
        "serve",
        "--config",
        str(config),
        "--sip-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--provider",
        provider,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=agent_environment(provider),
            cwd=workdir,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        text = log_path.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            if line.startswith(READY_PREFIX):
                match = _READY_RE.search(line)
                if match is None:
                    process.kill()
                    process.wait()
                    raise RuntimeError(f"cannot read the ports from the ready line: {line}")
                return AgentServer(int(match[1]), int(match[2]), process, log_path, config)
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
                process.wait()
            tail = "\n".join(text.splitlines()[-40:])
            raise RuntimeError(
                f"telephony-agent serve did not become ready (exit {process.returncode}):\n{tail}"
            )
        time.sleep(0.05)
