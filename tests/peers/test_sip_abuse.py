"""A real `serve` under garbage and floods: mutated SIP over UDP and TCP, and a burst of
never-ACKed INVITEs from one address while a real caller from another is answered.

Loopback addresses differ: the flood comes from 127.0.0.2, the caller (our `call`
command, a separate process) from 127.0.0.1, and the agent is the local echo backend,
so "hears the agent" means hearing its own speech come back.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from telephony_agent.audio.wav import read_wav
from telephony_agent.fuzz.wire import SipMutator, WireTarget
from telephony_agent.sip.message import (
    NameAddr,
    SipParseError,
    SipResponse,
    Via,
    parse_cseq,
    split_header_values,
)
from telephony_agent.sip.parser import StreamFramer, parse_message

from .agent_process import AgentServer, agent_environment, free_port
from .conftest import SAMPLE, StartAgent

UDP_MESSAGES = 3000
TCP_MESSAGES = 600
LIVENESS_EVERY = 500

_STATUS_LINE = re.compile(rb"^SIP/2\.0 [1-6][0-9]{2} [^\r\n]*$")
_HEADER_LINE = re.compile(rb"^[A-Za-z0-9\-.!%*_+`'~]+: [^\r\n]*$")
_CALL_ID = re.compile(r"[^\s<>\"]{1,1024}")


class _Collector:
    """Everything that arrives on a UDP socket, read by a thread so the socket never fills."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.datagrams: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                self.datagrams.append(self.sock.recv(65535))
            except TimeoutError:
                continue
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)


def well_formed(data: bytes) -> str | None:
    """Why `data` is not a well-formed SIP response (None when it is).

    The generic grammar always holds: a status line, "Name: value" header lines, a
    Content-Length that matches the body. Headers echoed from a request we refused
    (From, To, CSeq) can be as broken as they came; when they are not, the whole
    response must parse as one.
    """
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        return "no blank line after the headers"
    lines = head.split(b"\r\n")
    if not _STATUS_LINE.match(lines[0]):
        return f"bad status line {lines[0][:80]!r}"
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not _HEADER_LINE.match(line):
            return f"bad header line {line[:80]!r}"
        name, _, value = line.decode("utf-8", "replace").partition(": ")
        headers.setdefault(name.lower(), []).append(value)
    if headers.get("content-length") != [str(len(body))]:
        return "Content-Length does not match the body"
    for name in ("via", "from", "to", "call-id", "cseq"):
        if name not in headers:
            return f"no {name} header"
    try:
        for via in headers["via"]:
            for entry in split_header_values(via):
                Via.parse(entry)
        NameAddr.parse(headers["from"][0])
        NameAddr.parse(headers["to"][0])
        parse_cseq(headers["cseq"][0])
    except SipParseError:
        return None  # echoed as the request had them
    if len(headers["call-id"]) != 1 or not _CALL_ID.fullmatch(headers["call-id"][0]):
        return None  # likewise
    try:
        message = parse_message(data)
    except SipParseError as exc:
        return f"does not parse: {exc.reason}"
    if not isinstance(message, SipResponse):
        return "not a response"
    if message.status != 100 and not NameAddr.parse(message.headers.get("To") or "").tag:
        return "no To tag"
    return None


def _options(server_port: int, local_port: int, transport: str = "UDP") -> tuple[bytes, str]:
    call_id = "alive-" + secrets.token_hex(6)
    text = (
        f"OPTIONS sip:agent@127.0.0.1:{server_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{local_port}"
        f";branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@127.0.0.1>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:agent@127.0.0.1:{server_port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    return text.encode(), call_id


def _alive(server: AgentServer) -> None:
    """An OPTIONS from a fresh socket is answered 200 (three tries: it is UDP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        probe.settimeout(1.0)
        for _ in range(3):
            data, call_id = _options(server.sip_port, probe.getsockname()[1])
            probe.sendto(data, ("127.0.0.1", server.sip_port))
            try:
                while True:
                    reply = probe.recv(65535)
                    if call_id.encode() in reply:
                        assert reply.startswith(b"SIP/2.0 200 "), reply[:80]
                        return
            except TimeoutError:
                continue
    raise AssertionError("the server did not answer OPTIONS: not alive")


def _no_tracebacks(server: AgentServer) -> None:
    text = server.log_text()
    assert "Traceback" not in text, server.log_tail(80)
    errors = [r for r in server.log_events() if r.get("level") in ("error", "critical")]
    assert errors == [], errors[:5]


def test_mutated_sip_over_udp_and_tcp_gets_well_formed_answers_and_no_traceback(
    start_agent_server: StartAgent,
) -> None:
    server = start_agent_server(sip={"transports": "udp+tcp", "t1_ms": 100})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        collector = _Collector(sock)
        target = WireTarget("127.0.0.1", server.sip_port, "127.0.0.1", sock.getsockname()[1])
        mutator = SipMutator(target, seed=16)
        for n in range(1, UDP_MESSAGES + 1):
            with contextlib.suppress(OSError):  # larger than a datagram may be
                sock.sendto(mutator.message(), ("127.0.0.1", server.sip_port))
            if n % 50 == 0:
                time.sleep(0.02)  # about 2,000 messages a second
            if n % LIVENESS_EVERY == 0:
                _alive(server)
        replies_tcp = _tcp_round(server)
        _alive(server)
        time.sleep(1.0)
        collector.stop()
    replies = collector.datagrams + replies_tcp
    assert len(replies) > UDP_MESSAGES // 4, len(replies)
    bad = [(why, reply[:120]) for reply in replies if (why := well_formed(reply)) is not None]
    assert bad == [], bad[:5]
    health = server.health()
    assert health["sip_internal_errors"] == 0, health
    assert health["sip_bad_requests"] > 100, health
    if health["sip_udp_buffer_bytes"] >= 8 * 1024 * 1024:  # the kernel granted the default
        assert health["sip_udp_drops"] == 0, health
    _no_tracebacks(server)


def _tcp_round(server: AgentServer) -> list[bytes]:
    """Mutated messages over a few TCP connections (a broken stream is closed by the
    server: then the next connection goes on); returns the responses received."""
    responses: list[bytes] = []
    mutator: SipMutator | None = None
    sent = 0
    while sent < TCP_MESSAGES:
        with socket.create_connection(("127.0.0.1", server.sip_port), timeout=2.0) as conn:
            local_port = conn.getsockname()[1]
            if mutator is None:
                target = WireTarget(
                    "127.0.0.1", server.sip_port, "127.0.0.1", local_port, transport="TCP"
                )
                mutator = SipMutator(target, seed=61)
            framer = StreamFramer()
            try:
                for _ in range(100):
                    conn.sendall(mutator.message())
                    sent += 1
                conn.settimeout(0.5)
                while chunk := conn.recv(65535):
                    for item in framer.feed(chunk):
                        if isinstance(item, SipResponse):
                            responses.append(item.to_bytes())
            except (TimeoutError, ConnectionError):
                pass
    return responses


FLOOD = 300


def test_a_flood_of_never_acked_invites_leaves_a_real_caller_answered(
    start_agent_server: StartAgent, tmp_path: Path
) -> None:
    server = start_agent_server(sip={"max_calls": 60})
    port = server.sip_port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
        flood.bind(("127.0.0.2", 0))
        collector = _Collector(flood)
        me = flood.getsockname()[1]
        media = free_port()
        for n in range(FLOOD):
            flood.sendto(_never_acked_invite(port, me, media, n), ("127.0.0.1", port))
        recording = tmp_path / "heard.wav"
        caller = subprocess.run(
            [
                sys.executable,
                "-m",
                "telephony_agent",
                "call",
                f"sip:agent@127.0.0.1:{port}",
                "--play",
                str(SAMPLE),
                "--record",
                str(recording),
                "--codecs",
                "PCMU",
                "--duration",
                "7",
            ],
            env=agent_environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        collector.stop()
    assert caller.returncode == 0, caller.stdout + caller.stderr
    assert caller.stdout.startswith("answered:"), caller.stdout
    heard, rate = read_wav(recording)
    # The echo comes back after the caller's first pause: speech in the second half.
    tail = heard[len(heard) // 2 :].astype(np.float64)
    assert np.sqrt(np.mean(tail**2)) > 300.0, "the caller must hear the agent"
    del rate
    health = server.health()
    refused = health["sip_refused_rate"] + health["sip_refused_source_pending"]
    assert refused >= FLOOD - 60, health
    admitted = [r for r in server.log_events("call_admitted") if "flood-" in str(r)]
    assert len(admitted) <= 20, len(admitted)
    _no_tracebacks(server)


def _never_acked_invite(server_port: int, local_port: int, media_port: int, n: int) -> bytes:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
        f"m=audio {media_port} RTP/AVP 0\r\n"
    )
    return (
        f"INVITE sip:agent@127.0.0.1:{server_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.2:{local_port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:scanner@127.0.0.2>;tag={n}\r\n"
        f"To: <sip:agent@127.0.0.1:{server_port}>\r\n"
        f"Call-ID: flood-{n}-{secrets.token_hex(4)}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:scanner@127.0.0.2:{local_port}>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()
