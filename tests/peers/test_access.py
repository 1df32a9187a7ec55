"""Inbound access control on a deployed `serve`: the allowlist, device auth, bans.

Why real processes: what matters is what a stranger on the network sees — nothing
(or a 403) from outside the allowlist, a challenge that does not reveal which users
exist, and silence once it has guessed wrong too often — and that a real device
(SIPp answering the challenge) still gets its call.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from tests.peers.agent_process import AgentServer
from tests.peers.conftest import StartAgent
from tests.peers.test_sipp import assert_sipp_ok, settled

DEVICES = """
[[sip.users]]
username = "desk1"
password_env = "DESK1_PASSWORD"
"""


def _send(agent: AgentServer, method: str, *, source: str = "127.0.0.1", extra: str = "") -> str:
    """One out-of-dialog request from `source`; the first response's status line, or ''."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(1.0)
        port = sock.getsockname()[1]
        body = ""
        message = (
            f"{method} sip:agent@127.0.0.1:{agent.sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:desk1@{source}:{port}>;tag=t{uuid.uuid4().hex[:6]}\r\n"
            f"To: <sip:agent@127.0.0.1:{agent.sip_port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@{source}\r\n"
            f"CSeq: 1 {method}\r\n"
            f"Contact: <sip:desk1@{source}:{port}>\r\n"
            f"{extra}"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        )
        sock.sendto(message.encode(), ("127.0.0.1", agent.sip_port))
        try:
            while True:
                data = sock.recv(65535).decode(errors="replace")
                status = data.split("\r\n", 1)[0]
                if not status.startswith("SIP/2.0 100"):
                    return data
        except TimeoutError:
            return ""


def test_outside_the_allowlist_gets_403_or_nothing(start_agent_server: StartAgent) -> None:
    agent = start_agent_server(sip={"allow": ["127.0.0.2/32"], "deny_action": "403"})
    assert _send(agent, "OPTIONS").startswith("SIP/2.0 403")
    assert _send(agent, "OPTIONS", source="127.0.0.2").startswith("SIP/2.0 200")
    silent = start_agent_server(sip={"allow": ["127.0.0.2/32"]})
    assert _send(silent, "INVITE") == ""
    assert silent.health()["access"]["denied"] == 1
    assert silent.health()["invites"] == 0


def test_devices_authenticate_and_guessers_are_banned(
    start_agent_server: StartAgent,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    speech_ulaw: Path,
) -> None:
    monkeypatch.setenv("DESK1_PASSWORD", "desk-pw-1")
    agent = start_agent_server(
        extra_toml=DEVICES,
        # SIPp answers only the first challenge and knows only MD5.
        sip={
            "allow": ["127.0.0.3/32"],
            "auth_max_failures": 3,
            "auth_algorithms": ["MD5", "SHA-256"],
        },
    )
    # A real device answers the challenge and gets its call.
    assert_sipp_ok(
        agent,
        "auth_call.xml",
        tmp_path / "device",
        speech_ulaw,
        extra=("-s", "desk1", "-au", "desk1", "-ap", "desk-pw-1"),
    )
    settled(agent, 1)
    # Unknown user and wrong password look the same: a fresh challenge, nothing else.
    challenge = _send(agent, "INVITE", source="127.0.0.4")
    assert challenge.startswith("SIP/2.0 401")
    assert "algorithm=SHA-256" in challenge and "algorithm=MD5" in challenge
    bad = (
        'Authorization: Digest username="{user}", realm="telephony-agent", nonce="x", '
        'uri="sip:agent@127.0.0.1", response="0123456789abcdef0123456789abcdef"\r\n'
    )
    answers = [
        _send(agent, "INVITE", source="127.0.0.4", extra=bad.format(user=user)).split("\r\n")[0]
        for user in ("desk1", "nobody")
    ]
    assert answers[0].startswith("SIP/2.0 401") and answers[0] == answers[1]
    # The third failure bans the source: from then on, silence.
    assert _send(agent, "INVITE", source="127.0.0.4", extra=bad.format(user="desk1")).startswith(
        "SIP/2.0 401"
    )
    assert _send(agent, "INVITE", source="127.0.0.4") == ""
    assert _send(agent, "OPTIONS", source="127.0.0.4") == ""
    access = agent.health()["access"]
    assert access["bans"] == 1 and access["auth_failures"] == 3 and access["banned_dropped"] == 2
    assert agent.log_events("sip_source_banned")
    assert "desk-pw-1" not in agent.log_text()
    # Other sources are unaffected, and the allowlisted one needs no password.
    assert _send(agent, "OPTIONS", source="127.0.0.5").startswith("SIP/2.0 200")
