"""The life of a deployed `serve`: draining on SIGTERM, and starts that cannot succeed.

Real processes throughout: `serve` as a subprocess, SIPp as the caller, signals sent
as an init system or Kubernetes sends them.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.observability.support import metric

from .agent_process import AgentServer, free_port
from .conftest import StartAgent
from .lifecycle_support import (
    failed_start,
    finish,
    metrics_text,
    readyz,
    sip_probe,
    start_sipp,
)

needs_sipp = pytest.mark.skipif(
    shutil.which("sipp") is None,
    reason="sipp is not installed (Debian/Ubuntu package sip-tester; .ci/run installs it)",
)


def _target(agent: AgentServer) -> str:
    return f"127.0.0.1:{agent.sip_port}"


def _wait_exit(agent: AgentServer, timeout_s: float) -> int | None:
    try:
        return agent.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return None


def _index(agent: AgentServer, event: str, **fields: object) -> int:
    """Position of the first log line of `event` (with those fields) in the server's log."""
    for position, record in enumerate(agent.log_events()):
        if record.get("event") == event and all(record.get(k) == v for k, v in fields.items()):
            return position
    raise AssertionError(f"no {event} {fields} in the log:\n{agent.log_tail()}")


@needs_sipp
def test_sigterm_drains_live_calls_refuses_new_ones_and_exits_0(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    agent = start_agent_server(server={"drain_timeout_s": 30})
    caller = start_sipp(
        _target(agent), "paused_call.xml", tmp_path / "sipp", speech_ulaw, extra=("-d", "7000")
    )
    agent.wait_health(lambda h: h["active_calls"] == 1)
    assert readyz(agent)[0] == 200
    # curl /metrics during the call: the call, and its first turn's latency.
    deadline = time.monotonic() + 15
    while True:
        text = metrics_text(agent)
        turns = metric(text, "telephony_agent_turn_first_frame_seconds_count")
        if turns >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert turns >= 1, text
    assert metric(text, "telephony_agent_calls_active", kind="sip") == 1
    assert metric(text, "telephony_agent_turn_first_audio_seconds_count") >= 1
    agent.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    while readyz(agent)[0] == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    status, body = readyz(agent)
    assert (status, body["failing"]) == (503, ["not_draining"])
    options = sip_probe(agent, "OPTIONS")
    assert options.status == 503
    assert options.headers.get("Retry-After")
    invite = sip_probe(agent, "INVITE")
    assert invite.status == 503
    assert invite.headers.get("Retry-After")
    # The call that was live when the drain began goes on to its natural end.
    code, output = finish(caller)
    assert code == 0, output
    assert _wait_exit(agent, 15) == 0
    ended = agent.log_events("call_event_ended")
    assert [e["reason"] for e in ended] == ["caller_hangup"]
    (drained,) = agent.log_events("drain_finished")
    assert (drained["finished_in_time"], drained["ended_politely"]) == (1, 0)


@needs_sipp
def test_calls_left_when_the_drain_time_is_up_hear_a_goodbye_then_bye(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    agent = start_agent_server(
        server={"drain_timeout_s": 1, "drain_goodbye_instructions": "Say goodbye."}
    )
    caller = start_sipp(_target(agent), "silent_until_bye.xml", tmp_path / "sipp", speech_ulaw)
    agent.wait_health(lambda h: h["active_calls"] == 1)
    time.sleep(0.5)
    started = time.monotonic()
    agent.process.send_signal(signal.SIGTERM)
    code, output = finish(caller)
    assert code == 0, output  # SIPp received the agent's BYE and answered it
    assert _wait_exit(agent, 15) == 0
    took = time.monotonic() - started
    (ended,) = agent.log_events("call_event_ended")
    assert ended["reason"] == "server_draining"
    (drained,) = agent.log_events("drain_finished")
    assert (drained["finished_in_time"], drained["ended_politely"]) == (0, 1)
    # The goodbye was spoken (an agent line after the drain began) before the BYE.
    goodbye = next(
        position
        for position, record in enumerate(agent.log_events())
        if record.get("event") == "transcript" and record.get("speaker") == "agent"
    )
    assert _index(agent, "drain_started") < goodbye < _index(agent, "bye_sent")
    print(f"drain with goodbye: SIGTERM to exit {took:.1f} s")


@needs_sipp
def test_a_second_sigterm_ends_the_drain_at_once(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    agent = start_agent_server(server={"drain_timeout_s": 600})
    caller = start_sipp(_target(agent), "silent_until_bye.xml", tmp_path / "sipp", speech_ulaw)
    agent.wait_health(lambda h: h["active_calls"] == 1)
    agent.process.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert agent.process.poll() is None  # still draining: the call is live
    started = time.monotonic()
    agent.process.send_signal(signal.SIGTERM)
    assert _wait_exit(agent, 10) == 0
    assert time.monotonic() - started < 5
    code, output = finish(caller)
    assert code == 0, output  # hung up with BYE, not dropped
    (drained,) = agent.log_events("drain_finished")
    assert drained["forced"] is True
    assert "stopping now" in agent.log_text()


def _assert_one_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return str(lines[0])


def test_a_sip_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = failed_start(
            tmp_path, {}, "--sip-listen", f"127.0.0.1:{port}", "--http-listen", "127.0.0.1:0"
        )
    line = _assert_one_line(result, f"sip.listen = '127.0.0.1:{port}'", "already in use")
    assert line.startswith("telephony-agent: error:")


def test_an_http_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = failed_start(
            tmp_path,
            {},
            "--sip-listen",
            f"127.0.0.1:{free_port()}",
            "--http-listen",
            f"127.0.0.1:{port}",
        )
    _assert_one_line(result, f"http.listen = '127.0.0.1:{port}'", "already in use")


@pytest.mark.parametrize("kind", ["missing", "not_pem"])
def test_a_certificate_that_cannot_be_read_is_one_line_and_exit_2(
    tmp_path: Path, kind: str
) -> None:
    certificate = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    if kind == "not_pem":
        certificate.write_text("not a certificate\n")
        key.write_text("not a key\n")
    result = failed_start(
        tmp_path / "run",
        {"http": {"tls_certificate": str(certificate), "tls_key": str(key)}},
        "--sip-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    )
    expected = "cannot read it" if kind == "missing" else "not a usable certificate"
    _assert_one_line(result, f"http.tls_certificate = '{certificate}'", expected)


def test_a_data_folder_that_cannot_be_written_is_one_line_and_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way\n")
    # A folder under a regular file cannot be created, even by root.
    data_dir = blocker / "data"
    result = failed_start(
        tmp_path / "run",
        {"records": {"data_dir": str(data_dir)}},
        "--sip-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    )
    _assert_one_line(result, f"records.data_dir = '{data_dir}'", "cannot write there")
