"""The agent registers with a real Kamailio and answers calls routed to it through it.

Why with real processes: digest auth, the location table and record-routing are
Kamailio's own; SIPp calls the registered user at Kamailio, which must find the
agent's contact and relay the call, and ACK and BYE must follow the route set.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.peers.agent_process import AgentServer, free_port
from tests.peers.conftest import StartAgent
from tests.peers.kamailio_process import Kamailio
from tests.peers.test_sipp import SCENARIOS, SIPP_TIMEOUT_S, settled, sipp_failure

PASSWORD = "kamailio-test-pw"
PROFILE = """
[[profiles]]
name = "trunk"
numbers = ["never-dialled"]
instructions = "Calls from the trunk."
"""


def _registration(port: int, **extra: Any) -> str:
    values = {
        "name": "trunk",
        "registrar": f"sip:127.0.0.1:{port}",
        "username": "alice",
        "password_env": "TRUNK_PASSWORD",
        "profile": "trunk",
        "expires": 60,
        "keepalive_s": 1.0,
        "retry_min_s": 1.0,
        "retry_max_s": 2.0,
        **extra,
    }
    lines = ["[[registrations]]"]
    for key, value in values.items():
        lines.append(f"{key} = {value!r}".replace("'", '"'))
    return "\n".join(lines) + "\n"


@pytest.fixture
def kamailio(tmp_path: Path) -> Any:
    server = Kamailio(tmp_path / "kamailio", free_port(), {"alice": PASSWORD})
    server.start()
    yield server
    server.stop()


def _start(
    start_agent_server: StartAgent, monkeypatch: pytest.MonkeyPatch, port: int, password: str
) -> AgentServer:
    monkeypatch.setenv("TRUNK_PASSWORD", password)
    return start_agent_server(
        extra_toml=PROFILE + _registration(port),
        # A short T1 keeps an unanswered keep-alive (64 x T1) to a few seconds.
        sip={"t1_ms": 50},
    )


def _registration_state(agent: AgentServer) -> dict[str, Any]:
    state: dict[str, Any] = agent.health().get("registrations", {}).get("trunk", {})
    return state


def _wait_state(agent: AgentServer, wanted: str, timeout_s: float = 10.0) -> dict[str, Any]:
    health = agent.wait_health(
        lambda h: h.get("registrations", {}).get("trunk", {}).get("state") == wanted, timeout_s
    )
    state: dict[str, Any] = health.get("registrations", {}).get("trunk", {})
    assert state.get("state") == wanted, state
    return state


def _call_through(kamailio: Kamailio, workdir: Path, speech_ulaw: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(SCENARIOS / "via_proxy.xml", workdir / "via_proxy.xml")
    shutil.copy(speech_ulaw, workdir / "speech_8k.ulaw")
    command = [
        "sipp",
        f"127.0.0.1:{kamailio.port}",
        "-sf",
        "via_proxy.xml",
        "-s",
        "alice",
        "-m",
        "1",
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port()),
        "-mp",
        str(free_port(span=4)),
        "-timeout",
        f"{SIPP_TIMEOUT_S}s",
        "-timeout_error",
        "-trace_err",
        "-nostdin",
    ]
    result = subprocess.run(
        command,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=SIPP_TIMEOUT_S + 30,
        check=False,
    )
    assert result.returncode == 0, sipp_failure(result, workdir) + kamailio.log_text()[-3000:]


def _options_status(kamailio: Kamailio, user: str) -> int | None:
    """Ask Kamailio for `user` with OPTIONS; 404 means no registered contact."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2.0)
        port = sock.getsockname()[1]
        message = (
            f"OPTIONS sip:{user}@127.0.0.1:{kamailio.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@127.0.0.1:{port}>;tag=probe\r\n"
            f"To: <sip:{user}@127.0.0.1:{kamailio.port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(message.encode(), ("127.0.0.1", kamailio.port))
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return None
    return int(data.split(b" ", 2)[1])


def test_registers_with_digest_and_answers_calls_routed_through_kamailio(
    kamailio: Kamailio,
    start_agent_server: StartAgent,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    speech_ulaw: Path,
) -> None:
    agent = _start(start_agent_server, monkeypatch, kamailio.port, PASSWORD)
    state = _wait_state(agent, "registered")
    assert state["registrar"] == f"sip:127.0.0.1:{kamailio.port}"
    assert 0 < state["expires_in_s"] <= 60
    assert "challenged" in kamailio.log_text()  # digest really happened

    _call_through(kamailio, tmp_path / "call", speech_ulaw)
    settled(agent, 1)
    admitted = agent.log_events("call_admitted")
    assert [r["profile"] for r in admitted] == ["trunk"]
    texts = [(r.get("speaker"), str(r.get("text"))) for r in agent.log_events("transcript")]
    assert any(s == "agent" and t.startswith("Echo") for s, t in texts), texts

    # On the way out the agent removes its binding: Kamailio no longer knows alice.
    assert agent.stop() == 0
    assert _options_status(kamailio, "alice") == 404
    assert PASSWORD not in agent.log_text()


def test_a_wrong_password_is_reported_and_retried_with_backoff(
    kamailio: Kamailio,
    start_agent_server: StartAgent,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = _start(start_agent_server, monkeypatch, kamailio.port, "not-the-password")
    state = _wait_state(agent, "failed")
    assert "credentials refused" in state["last_error"], state
    health = agent.wait_health(
        lambda h: h["registrations"]["trunk"]["failures"] >= 3, timeout_s=15.0
    )
    failures = health["registrations"]["trunk"]["failures"]
    assert failures >= 3
    # Backoff, not a loop: a handful of attempts in this time, not hundreds.
    registers = kamailio.log_text().count("register challenged")
    assert registers <= 2 * failures + 2, registers
    failed = agent.log_events("registration_failed")
    assert failed and "credentials refused" in str(failed[0]["reason"])
    assert "not-the-password" not in agent.log_text()
    assert _options_status(kamailio, "alice") == 404


def test_registers_again_after_kamailio_restarts(
    kamailio: Kamailio,
    start_agent_server: StartAgent,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    speech_ulaw: Path,
) -> None:
    agent = _start(start_agent_server, monkeypatch, kamailio.port, PASSWORD)
    _wait_state(agent, "registered")
    kamailio.stop()
    # The keep-alive goes unanswered, registering fails while Kamailio is away.
    _wait_state(agent, "failed", timeout_s=15.0)
    kamailio.start()  # its location table starts empty
    started = time.monotonic()
    _wait_state(agent, "registered", timeout_s=15.0)
    assert time.monotonic() - started < 15.0
    _call_through(kamailio, tmp_path / "after", speech_ulaw)
    settled(agent, 1)
