"""Inputs that once reached past the parser, each answered with a 4xx by a real server.

Before parse-time checks these raised deep in the server, logged a traceback at
ERROR and answered 500 (and a bad Contact leaked a call slot for good). Every
case here must get its 4xx, leave no call slot taken, and never reach the last
resort guard.
"""

from __future__ import annotations

import asyncio

import pytest

from telephony_agent.server.sip_server import AgentSipServer
from telephony_agent.sip.message import NameAddr, SipResponse
from tests.server.conftest import ServerFactory
from tests.server.raw_sip import RawSip, request, sdp_offer


def _to_tag(response: SipResponse) -> str | None:
    return NameAddr.parse(response.headers.get("To") or "").tag


def _replace(message: str, header: str, value: str) -> str:
    lines = message.split("\r\n")
    for index, line in enumerate(lines):
        if line.lower().startswith(header.lower() + ":"):
            lines[index] = f"{header}: {value}"
    return "\r\n".join(lines)


def _clean(server: AgentSipServer) -> None:
    assert server.endpoint.last_resort.caught == 0, server.endpoint.last_resort.sites
    assert server.switchboard.active_calls == 0


KNOWN_BAD = [
    ("INVITE", "Max-Forwards", "7" * 5000, "Max-Forwards"),
    ("OPTIONS", "Max-Forwards", "7" * 5000, "Max-Forwards"),
    ("BYE", "Max-Forwards", "9" * 4400, "Max-Forwards"),
    ("INVITE", "Contact", "<sip:tester@127.0.0.1:5062", "Contact"),
    ("INVITE", "Contact", "<sip:tester@127.0.0.1:0x10>", "Contact"),
    ("INVITE", "Contact", "*", "Contact"),
    ("INVITE", "Expires", "9" * 5000, "Expires"),
]


@pytest.mark.parametrize(
    ("method", "header", "value", "reason"),
    KNOWN_BAD,
    ids=[f"{m} {h} {v[:12]}" for m, h, v, _ in KNOWN_BAD],
)
async def test_known_bad_header_gets_400_with_the_reason(
    sip_server: ServerFactory, method: str, header: str, value: str, reason: str
) -> None:
    async with sip_server() as server:
        raw = await RawSip.open(server.sip_port)
        try:
            body = sdp_offer(40100) if method == "INVITE" else ""
            message = request(method, server.sip_port, raw.port, body=body)
            if header not in message:
                message = message.replace(
                    "Max-Forwards: 70\r\n", f"Max-Forwards: 70\r\n{header}: x\r\n"
                )
            raw.send(_replace(message, header, value))
            line = await raw.status_line()
            assert line.startswith("SIP/2.0 400 Bad Request ("), line
            assert reason in line, line
            assert await raw.silence(0.3) == [], "one answer, and no call behind it"
            assert server.stats.invites == 0
        finally:
            raw.close()
        _clean(server)


async def test_options_answer_has_a_to_tag(sip_server: ServerFactory) -> None:
    async with sip_server() as server:
        raw = await RawSip.open(server.sip_port)
        try:
            raw.send(request("OPTIONS", server.sip_port, raw.port))
            ok = await raw.response(200)
            assert _to_tag(ok)
            raw.send(request("FOOBAR", server.sip_port, raw.port))
            assert _to_tag(await raw.response(501))
        finally:
            raw.close()
        _clean(server)


async def test_info_with_a_huge_duration_is_answered(sip_server: ServerFactory) -> None:
    async with sip_server() as server:
        raw = await RawSip.open(server.sip_port)
        try:
            raw.send(request("INVITE", server.sip_port, raw.port, body=sdp_offer(40110)))
            ok = await raw.response(200)
            tag = _to_tag(ok)
            raw.send(request("ACK", server.sip_port, raw.port, call_id=ok.call_id, to_tag=tag))
            dtmf = f"Signal=5\r\nDuration={'9' * 5000}\r\n"
            info = request(
                "INFO", server.sip_port, raw.port, call_id=ok.call_id, cseq=2, to_tag=tag
            ).replace(
                "Content-Length: 0\r\n\r\n",
                "Content-Type: application/dtmf-relay\r\n"
                f"Content-Length: {len(dtmf)}\r\n\r\n{dtmf}",
            )
            raw.send(info)
            assert (await raw.response(200)).cseq == (2, "INFO")
            raw.send(
                request("BYE", server.sip_port, raw.port, call_id=ok.call_id, cseq=3, to_tag=tag)
            )
            await raw.response(200)
            await asyncio.sleep(0.3)
        finally:
            raw.close()
        _clean(server)
