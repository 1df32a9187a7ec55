"""Helpers for the lifecycle tests: SIPp in the background, raw SIP probes, failed starts."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from telephony_agent.sip.message import SipResponse
from telephony_agent.sip.parser import parse_message
from tests.server.raw_sip import request, sdp_offer

from .agent_process import AgentServer, agent_environment, free_port, merged_settings, to_toml

SCENARIOS = Path(__file__).resolve().parent / "sipp"


def start_sipp(
    target: str,
    scenario: str,
    workdir: Path,
    speech_ulaw: Path,
    *,
    calls: int = 1,
    extra: tuple[str, ...] = (),
    timeout_s: int = 60,
) -> subprocess.Popen[str]:
    """SIPp running `scenario` against `target` (HOST:PORT) in the background."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(SCENARIOS / scenario, workdir / scenario)
    shutil.copy(speech_ulaw, workdir / "speech_8k.ulaw")
    command = [
        "sipp",
        target,
        "-sf",
        scenario,
        "-m",
        str(calls),
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port()),
        "-mp",
        str(free_port(span=4)),
        "-timeout",
        f"{timeout_s}s",
        "-timeout_error",
        "-trace_err",
        "-nostdin",
        *extra,
    ]
    return subprocess.Popen(
        command,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )


def finish(process: subprocess.Popen[str], timeout_s: float = 60.0) -> tuple[int, str]:
    """Wait for SIPp; its exit code and output (killed if it overruns)."""
    try:
        out, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return int(process.returncode), out or ""


def readyz(server: AgentServer) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{server.http_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read())


def metrics_text(server: AgentServer) -> str:
    url = f"http://127.0.0.1:{server.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def sip_probe(server: AgentServer, method: str, *, within_s: float = 3.0) -> SipResponse:
    """Send one OPTIONS or INVITE from a fresh UDP socket; the first final response."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(within_s)
        port = int(sock.getsockname()[1])
        body = sdp_offer(free_port()) if method == "INVITE" else ""
        sock.sendto(
            request(method, server.sip_port, port, body=body).encode(),
            ("127.0.0.1", server.sip_port),
        )
        while True:
            message = parse_message(sock.recv(65536))
            if isinstance(message, SipResponse) and message.status >= 200:
                return message


def failed_start(
    workdir: Path, sections: dict[str, dict[str, Any]], *args: str
) -> subprocess.CompletedProcess[str]:
    """`serve` that is expected not to start: its exit code and what it printed."""
    workdir.mkdir(parents=True, exist_ok=True)
    settings = merged_settings({"log": {"level": "warning"}, **sections})
    config = workdir / "agent.toml"
    config.write_text(to_toml(settings), encoding="utf-8")
    command = [sys.executable, "-m", "telephony_agent", "serve", "--config", str(config), *args]
    return subprocess.run(
        command,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=agent_environment(),
        timeout=60,
        check=False,
    )
