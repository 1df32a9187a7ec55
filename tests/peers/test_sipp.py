"""SIPp against `telephony-agent serve`: calls, DTMF, CANCEL, hold, retransmissions, load.

The scenarios in `sipp/` are SIPp's own XML; SIPp exits 0 only when every call
followed its scenario (expected responses, checks on headers and SDP). What SIPp
cannot see (calls created, digits heard, CPU spent) is read from the server's
/health endpoint, its JSON log and /proc.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .agent_process import AgentServer, free_port
from .conftest import StartAgent

pytestmark = pytest.mark.skipif(
    shutil.which("sipp") is None,
    reason="sipp is not installed (Debian/Ubuntu package sip-tester; .ci/run installs it)",
)

SCENARIOS = Path(__file__).resolve().parent / "sipp"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SIPP_TIMEOUT_S = 30


def run_sipp(
    server: AgentServer,
    scenario: str,
    workdir: Path,
    speech_ulaw: Path,
    *,
    calls: int = 1,
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run one scenario in the foreground from `workdir` and return the finished process.

    The scenario and the μ-law file are copied into `workdir` so that SIPp finds
    `speech_8k.ulaw` by its relative name and writes its logs there.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(SCENARIOS / scenario, workdir / scenario)
    shutil.copy(speech_ulaw, workdir / "speech_8k.ulaw")
    command = [
        "sipp",
        f"127.0.0.1:{server.sip_port}",
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
        f"{SIPP_TIMEOUT_S}s",
        "-timeout_error",
        "-trace_err",
        "-nostdin",
        *extra,
    ]
    return subprocess.run(
        command,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=SIPP_TIMEOUT_S + 30,
        check=False,
    )


def sipp_failure(result: subprocess.CompletedProcess[str], workdir: Path) -> str:
    """SIPp's exit code, the end of its screen and its error log, for an assertion message."""
    parts = [f"sipp exited {result.returncode}: {' '.join(result.args)}"]
    parts.append("\n".join(result.stdout.splitlines()[-25:]))
    if result.stderr.strip():
        parts.append(result.stderr.strip()[-3000:])
    for log in sorted(workdir.glob("*_errors.log")):
        parts.append(f"--- {log.name} ---\n{log.read_text(errors='replace')[-4000:]}")
    return "\n".join(parts)


def assert_sipp_ok(
    server: AgentServer,
    scenario: str,
    workdir: Path,
    speech_ulaw: Path,
    *,
    extra: tuple[str, ...] = (),
) -> None:
    result = run_sipp(server, scenario, workdir, speech_ulaw, extra=extra)
    assert result.returncode == 0, sipp_failure(result, workdir)


def settled(server: AgentServer, answered: int) -> dict[str, object]:
    """/health once `answered` calls have all completed (or after 10 s)."""
    return server.wait_health(
        lambda h: h["active_calls"] == 0 and h["completed"] >= answered, timeout_s=10.0
    )


def test_basic_call_streams_speech_and_hears_the_echo(
    agent: AgentServer, tmp_path: Path, speech_ulaw: Path
) -> None:
    assert_sipp_ok(agent, "basic_call.xml", tmp_path, speech_ulaw)

    health = settled(agent, 1)
    assert (health["invites"], health["answered"], health["completed"]) == (1, 1, 1), health
    texts = [(r.get("speaker"), str(r.get("text"))) for r in agent.log_events("transcript")]
    assert any(s == "caller" for s, _ in texts), texts
    assert any(s == "agent" and t.startswith("Echo") for s, t in texts), texts
    (leg,) = agent.log_events("rtp_leg_ended")
    # 3.35 s of speech in 20 ms packets, and the echo of it sent back.
    assert leg["packets_in"] >= 160, leg
    assert leg["packets_out"] >= 160, leg
    assert leg["malformed"] == 0, leg


def test_rfc4733_digit_from_pcap_is_logged(
    agent: AgentServer, tmp_path: Path, speech_ulaw: Path
) -> None:
    assert_sipp_ok(agent, "dtmf.xml", tmp_path, speech_ulaw)

    settled(agent, 1)
    texts = [str(r.get("text")) for r in agent.log_events("transcript")]
    assert "[DTMF 1]" in texts, texts
    assert texts.count("[DTMF 1]") == 1, texts  # one key press, however many end packets


def test_cancel_while_ringing_gets_487(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    # A slow Realtime session keeps the call ringing long enough to cancel it.
    server = start_agent_server(local={"session_start_delay_s": 3.0})
    assert_sipp_ok(server, "cancel.xml", tmp_path, speech_ulaw)

    health = server.wait_health(lambda h: h["active_calls"] == 0)
    assert health["invites"] == 1, health
    assert health["answered"] == 0, health
    assert health["active_calls"] == 0, health


def test_agent_hangs_up_at_max_duration(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    server = start_agent_server(agent={"max_duration_s": 3})
    started = time.monotonic()
    assert_sipp_ok(server, "agent_bye.xml", tmp_path, speech_ulaw)
    elapsed = time.monotonic() - started

    health = settled(server, 1)
    assert (health["answered"], health["completed"]) == (1, 1), health
    assert elapsed < 8.0, f"the agent's BYE came late: the scenario took {elapsed:.1f} s"
    (ended,) = server.log_events("call_ended")
    assert 2.5 <= float(ended["duration_s"]) <= 4.5, ended


def test_retransmitted_invite_makes_one_call(
    agent: AgentServer, tmp_path: Path, speech_ulaw: Path
) -> None:
    assert_sipp_ok(agent, "retransmit_invite.xml", tmp_path, speech_ulaw, extra=("-nr",))

    health = settled(agent, 1)
    assert health["answered"] == 1, health
    assert health["invites"] == 1, health
    assert health["completed"] == 1, health
    assert len(agent.log_events("call_answered")) == 1


def test_options_answers_200_with_allow(
    agent: AgentServer, tmp_path: Path, speech_ulaw: Path
) -> None:
    assert_sipp_ok(agent, "options.xml", tmp_path, speech_ulaw)
    assert agent.health()["invites"] == 0


def test_malformed_requests_from_sipp_get_400_and_the_server_stays_up(
    agent: AgentServer, tmp_path: Path, speech_ulaw: Path
) -> None:
    assert_sipp_ok(agent, "malformed.xml", tmp_path, speech_ulaw)
    health = agent.health()
    assert health["sip_bad_requests"] == 2, health
    assert health["invites"] == 0, health


def test_hold_and_resume_with_reinvite(
    agent: AgentServer, tmp_path: Path, speech_ulaw: Path
) -> None:
    assert_sipp_ok(agent, "hold.xml", tmp_path, speech_ulaw)

    health = settled(agent, 1)
    # The re-INVITEs belong to the call: no new calls, one answered and completed.
    assert (health["invites"], health["answered"], health["completed"]) == (1, 1, 1), health


# --- malformed input over a plain UDP socket ---------------------------------------------


def _request(
    method: str, server_port: int, local_port: int, headers: dict[str, str | None], body: str = ""
) -> bytes:
    """A request whose headers can be replaced (a value) or left out (None)."""
    fields: dict[str, str | None] = {
        "Via": f"SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{secrets.token_hex(6)};rport",
        "Max-Forwards": "70",
        "From": f"<sip:tester@127.0.0.1:{local_port}>;tag={secrets.token_hex(4)}",
        "To": f"<sip:agent@127.0.0.1:{server_port}>",
        "Call-ID": secrets.token_hex(8),
        "CSeq": f"1 {method}",
        "Contact": f"<sip:tester@127.0.0.1:{local_port}>",
        "Content-Type": "application/sdp" if body else None,
        "Content-Length": str(len(body.encode())),
    }
    fields.update(headers)
    lines = [f"{method} sip:agent@127.0.0.1:{server_port} SIP/2.0"]
    lines += [f"{name}: {value}" for name, value in fields.items() if value is not None]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def _offer(port: int) -> str:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )


def _replies(sock: socket.socket, wait_s: float) -> list[bytes]:
    """Every datagram that arrives within `wait_s` seconds."""
    replies: list[bytes] = []
    deadline = time.monotonic() + wait_s
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            replies.append(sock.recv(65535))
        except TimeoutError:
            break
    return replies


def _status_lines(replies: list[bytes]) -> list[str]:
    return [r.split(b"\r\n", 1)[0].decode("utf-8", "replace") for r in replies]


def test_malformed_datagrams_get_400_or_silence_and_the_server_stays_up(
    agent: AgentServer,
) -> None:
    port = agent.sip_port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.connect(("127.0.0.1", port))
        me = int(sock.getsockname()[1])
        offer = _offer(free_port())

        # Nothing to answer: not SIP at all, or no Call-ID a response could echo.
        unanswerable = {
            "random bytes": secrets.token_bytes(300),
            "binary noise": b"\x00\xff\xfe" * 50,
            "not a request line": b"HELLO THERE\r\n\r\n",
            "a bare status line": b"SIP/2.0 200\r\n",
            "missing Call-ID": _request("INVITE", port, me, {"Call-ID": None}, offer),
        }
        for datagram in unanswerable.values():
            sock.send(datagram)
        assert _status_lines(_replies(sock, 1.0)) == [], "unanswerable input must get no reply"

        answerable = {
            "bad CSeq": _request("INVITE", port, me, {"CSeq": "one INVITE"}, offer),
            "CSeq method mismatch": _request("INVITE", port, me, {"CSeq": "1 BYE"}, offer),
            "Content-Length past the end": _request(
                "INVITE", port, me, {"Content-Length": str(len(offer) + 500)}, offer
            ),
            "Content-Length not a number": _request(
                "INVITE", port, me, {"Content-Length": "lots"}, offer
            ),
        }
        statuses: dict[str, list[str]] = {}
        for name, datagram in answerable.items():
            sock.send(datagram)
            statuses[name] = _status_lines(_replies(sock, 0.7))
        wrong = {
            name: lines
            for name, lines in statuses.items()
            if len(lines) != 1 or not lines[0].startswith("SIP/2.0 400 ")
        }
        assert not wrong, f"expected one 400 Bad Request each, got: {wrong}"

        sock.send(_request("OPTIONS", port, me, {}))
        assert _status_lines(_replies(sock, 1.0))[:1] == ["SIP/2.0 200 OK"]

    health = agent.health()
    assert health["invites"] == 0 and health["active_calls"] == 0, health
    assert health["sip_bad_requests"] == len(answerable), health
    assert health["sip_malformed_dropped"] == len(unanswerable), health
    assert agent.process.poll() is None


# --- load --------------------------------------------------------------------------------

LOAD_CALLS = 50


def test_fifty_concurrent_calls_with_audio(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    server = start_agent_server(
        sip={"max_calls": 60}, rtp={"port_min": 20000, "port_max": 20999}, log={"level": "info"}
    )
    cpu_before = server.cpu_seconds()
    started = time.monotonic()
    result = run_sipp(
        server,
        "basic_call.xml",
        tmp_path,
        speech_ulaw,
        calls=LOAD_CALLS,
        extra=("-l", str(LOAD_CALLS), "-r", "25"),
    )
    wall = time.monotonic() - started
    assert result.returncode == 0, sipp_failure(result, tmp_path)

    health = settled(server, LOAD_CALLS)
    cpu = server.cpu_seconds() - cpu_before
    assert health["answered"] == LOAD_CALLS, health
    assert health["completed"] == LOAD_CALLS, health
    assert health["rejected_busy"] == 0, health
    ended = server.log_events("call_ended")
    assert len(ended) == LOAD_CALLS
    call_seconds = sum(float(r["duration_s"]) for r in ended)
    legs = server.log_events("rtp_leg_ended")
    assert all(leg["packets_in"] >= 160 and leg["packets_out"] >= 160 for leg in legs), [
        (leg["packets_in"], leg["packets_out"]) for leg in legs
    ]
    lost = sum(int(leg["lost"]) for leg in legs)

    per_call_second_ms = cpu / call_seconds * 1000.0
    report = (
        f"{LOAD_CALLS} concurrent SIPp calls with audio: {call_seconds:.1f} call-seconds "
        f"in {wall:.1f} s wall, server CPU {cpu:.2f} s, RTP lost {lost}\n"
        f"CPU per call-second: {per_call_second_ms:.1f} ms\n"
    )
    print("\n" + report, end="")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load.txt").write_text(report, encoding="utf-8")
