"""Calls between INVITE and ACK: limits per address and in total, the Realtime session
held only while an ACK is likely, no media before the ACK, and SDP host names.

The server runs with T1 = 100 ms (see conftest), so the session is held 8*T1 = 0.8 s
for the ACK and the 200 OK is retransmitted for 64*T1 = 6.4 s.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from telephony_agent.sip.message import NameAddr, SipResponse
from tests.server.conftest import ServerFactory
from tests.server.raw_sip import RawSip, request, sdp_offer


def _to_tag(response: SipResponse) -> str | None:
    return NameAddr.parse(response.headers.get("To") or "").tag


class _RtpSink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.packets += 1


async def _rtp_sink() -> tuple[asyncio.DatagramTransport, _RtpSink, int]:
    loop = asyncio.get_running_loop()
    sink = _RtpSink()
    transport, _ = await loop.create_datagram_endpoint(lambda: sink, local_addr=("127.0.0.1", 0))
    return transport, sink, int(transport.get_extra_info("sockname")[1])


async def _hang_up(raw: RawSip, port: int, ok: SipResponse) -> None:
    tag = _to_tag(ok)
    raw.send(request("BYE", port, raw.port, call_id=ok.call_id, cseq=2, to_tag=tag))
    await raw.response(200)


async def test_the_call_starts_only_when_the_ack_arrives(sip_server: ServerFactory) -> None:
    transport, sink, media_port = await _rtp_sink()
    async with sip_server() as server:
        raw = await RawSip.open(server.sip_port)
        try:
            raw.send(request("INVITE", server.sip_port, raw.port, body=sdp_offer(media_port)))
            ok = await raw.response(200)
            await asyncio.sleep(0.4)
            assert sink.packets == 0, "no media to an address nobody confirmed"
            raw.send(
                request("ACK", server.sip_port, raw.port, call_id=ok.call_id, to_tag=_to_tag(ok))
            )
            await asyncio.sleep(0.5)
            assert sink.packets >= 10
            assert server.stats.sessions_closed_unacked == 0
            await _hang_up(raw, server.sip_port, ok)
        finally:
            raw.close()
            transport.close()


async def test_a_late_ack_reopens_the_closed_session(sip_server: ServerFactory) -> None:
    transport, sink, media_port = await _rtp_sink()
    async with sip_server() as server:
        raw = await RawSip.open(server.sip_port)
        try:
            raw.send(request("INVITE", server.sip_port, raw.port, body=sdp_offer(media_port)))
            ok = await raw.response(200)
            await asyncio.sleep(1.2)  # past the 0.8 s hold: the session is closed
            assert server.stats.sessions_closed_unacked == 1
            assert server.pending_calls == 1
            raw.send(
                request("ACK", server.sip_port, raw.port, call_id=ok.call_id, to_tag=_to_tag(ok))
            )
            await asyncio.sleep(0.8)
            assert sink.packets >= 10, "the caller is there after all: the call runs"
            assert server.pending_calls == 0
            await _hang_up(raw, server.sip_port, ok)
        finally:
            raw.close()
            transport.close()


async def test_a_call_never_acked_is_hung_up_and_gives_its_slot_back(
    sip_server: ServerFactory,
) -> None:
    async with sip_server(sip={"t1_ms": 30}) as server:
        raw = await RawSip.open(server.sip_port)
        try:
            raw.send(request("INVITE", server.sip_port, raw.port, body=sdp_offer(40200)))
            await raw.response(200)
            bye = await raw.request("BYE", within_s=5.0)
            raw.send(
                "SIP/2.0 200 OK\r\n"
                + "".join(f"{n}: {v}\r\n" for n, v in bye.headers if n != "Content-Length")
                + "Content-Length: 0\r\n\r\n"
            )
            await asyncio.sleep(0.3)
            assert server.switchboard.active_calls == 0
            assert server.pending_calls == 0
            assert server.stats.sessions_closed_unacked == 1
            assert server.stats.answered == 1
        finally:
            raw.close()
        assert server.endpoint.last_resort.caught == 0


async def test_pending_calls_per_address_are_limited_and_refused_once(
    sip_server: ServerFactory,
) -> None:
    async with sip_server(sip={"max_pending_per_source": 2}) as server:
        flood = await RawSip.open(server.sip_port, "127.0.0.2")
        caller = await RawSip.open(server.sip_port)
        try:
            for n in range(2):
                flood.send(request("INVITE", server.sip_port, flood.port, body=sdp_offer(40300)))
                await flood.response(200)
                del n
            flood.send(request("INVITE", server.sip_port, flood.port, body=sdp_offer(40302)))
            refused = await flood.response(503)
            assert "from your address" in refused.reason
            assert refused.headers.get("Retry-After") == "5"
            assert _to_tag(refused)
            # Answered statelessly: no retransmission of the 503 (T1 is 100 ms).
            late = [d for d in await flood.silence(0.5) if d.startswith(b"SIP/2.0 503")]
            assert late == []
            # Another address is not held up by this one.
            caller.send(request("INVITE", server.sip_port, caller.port, body=sdp_offer(40304)))
            ok = await caller.response(200)
            await _hang_up(caller, server.sip_port, ok)
            assert server.limits.stats.refused_source_pending == 1
        finally:
            flood.close()
            caller.close()


async def test_pending_calls_in_total_are_limited(sip_server: ServerFactory) -> None:
    async with sip_server(sip={"max_pending_calls": 1}) as server:
        first = await RawSip.open(server.sip_port, "127.0.0.3")
        second = await RawSip.open(server.sip_port, "127.0.0.4")
        try:
            first.send(request("INVITE", server.sip_port, first.port, body=sdp_offer(40310)))
            ok = await first.response(200)
            second.send(request("INVITE", server.sip_port, second.port, body=sdp_offer(40312)))
            refused = await second.response(503)
            assert "in total" in refused.reason
            first.send(
                request("ACK", server.sip_port, first.port, call_id=ok.call_id, to_tag=_to_tag(ok))
            )
            await asyncio.sleep(0.2)
            second.send(request("INVITE", server.sip_port, second.port, body=sdp_offer(40314)))
            assert (await second.response(200)).status == 200
        finally:
            first.close()
            second.close()


async def test_invites_over_the_rate_are_dropped_unanswered(sip_server: ServerFactory) -> None:
    async with sip_server(sip={"invite_rate_per_source": 1.0}) as server:
        raw = await RawSip.open(server.sip_port, "127.0.0.5")
        try:
            for port in (40320, 40322, 40324):
                raw.send(request("INVITE", server.sip_port, raw.port, body=sdp_offer(port)))
            await asyncio.sleep(1.0)
            replies = await raw.silence(0.1)
            trying = [d for d in replies if d.startswith(b"SIP/2.0 100")]
            assert len(trying) == 2, "a burst of twice the rate passes; the third is dropped"
            assert server.limits.stats.refused_rate == 1
            assert server.endpoint.layer.server_count <= 2 + 2, "the dropped one is forgotten"
        finally:
            raw.close()


async def test_an_sdp_host_name_is_looked_up(sip_server: ServerFactory) -> None:
    transport, sink, media_port = await _rtp_sink()
    async with sip_server() as server:
        raw = await RawSip.open(server.sip_port)
        try:
            offer = sdp_offer(media_port).replace("c=IN IP4 127.0.0.1", "c=IN IP4 localhost")
            raw.send(request("INVITE", server.sip_port, raw.port, body=offer))
            ok = await raw.response(200)
            call = next(iter(server._calls.values()))
            assert call.negotiated is not None
            assert call.negotiated.remote_rtp == ("127.0.0.1", media_port)
            raw.send(
                request("ACK", server.sip_port, raw.port, call_id=ok.call_id, to_tag=_to_tag(ok))
            )
            await asyncio.sleep(0.4)
            assert sink.packets > 0
            await _hang_up(raw, server.sip_port, ok)
        finally:
            raw.close()
            transport.close()
        assert server.endpoint.last_resort.caught == 0


async def test_an_sdp_host_name_that_does_not_resolve_gets_488(
    sip_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = socket.getaddrinfo

    def no_such_host(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    async with sip_server() as server:
        raw = await RawSip.open(server.sip_port)
        try:
            offer = sdp_offer(40330).replace("c=IN IP4 127.0.0.1", "c=IN IP4 media.invalid")
            raw.send(request("INVITE", server.sip_port, raw.port, body=offer))
            refused = await raw.response(488)
            assert "media host media.invalid does not resolve" in refused.reason
            await asyncio.sleep(0.2)
            assert server.switchboard.active_calls == 0
        finally:
            raw.close()
        assert server.endpoint.last_resort.caught == 0
