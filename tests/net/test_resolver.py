"""Host names looked up off the loop, bounded in time and in number."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import pytest

from telephony_agent.sip.resolver import HostResolver, ResolveError, is_ip_literal


async def test_addresses_pass_through_and_localhost_resolves() -> None:
    resolver = HostResolver()
    try:
        assert await resolver.resolve("192.0.2.7") == "192.0.2.7"
        assert await resolver.resolve("2001:db8::1", socket.AF_INET6) == "2001:db8::1"
        assert await resolver.resolve("localhost") == "127.0.0.1"
    finally:
        resolver.close()
    assert is_ip_literal("::1") and not is_ip_literal("localhost")


async def test_a_slow_lookup_is_given_up_without_stalling_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()

    def slow(*args: Any, **kwargs: Any) -> Any:
        release.wait(5.0)
        raise socket.gaierror("too late")

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    resolver = HostResolver(timeout_s=0.3, max_in_flight=2)
    loop = asyncio.get_running_loop()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beat = asyncio.ensure_future(ticker())
    started = loop.time()
    try:
        results = await asyncio.gather(
            resolver.resolve("slow-1.example"),
            resolver.resolve("slow-2.example"),
            resolver.resolve("slow-3.example"),
            return_exceptions=True,
        )
        elapsed = loop.time() - started
    finally:
        beat.cancel()
        release.set()
        resolver.close()
    assert all(isinstance(r, ResolveError) for r in results), results
    assert "too many name lookups" in str(results[2])
    assert "did not resolve within 0.3 s" in str(results[0])
    assert elapsed < 1.0
    assert ticks >= 15, "the event loop must keep running while names are looked up"


async def test_answers_are_kept_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real = socket.getaddrinfo

    def counting(host: str, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real("127.0.0.1", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    resolver = HostResolver()
    try:
        first = await resolver.resolve("media.example")
        second = await resolver.resolve("MEDIA.example")
    finally:
        resolver.close()
    assert (first, second, calls) == ("127.0.0.1", "127.0.0.1", 1)


async def test_a_name_that_does_not_resolve_is_a_resolve_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.01)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", missing)
    resolver = HostResolver()
    try:
        with pytest.raises(ResolveError, match="does not resolve"):
            await resolver.resolve("nowhere.invalid")
    finally:
        resolver.close()
    assert resolver.failures == 1


class _Nobody:
    def on_request(self, request: Any, transaction: Any, source: Any) -> None: ...

    def on_ack_timeout(self, transaction: Any) -> None: ...


async def test_a_request_to_a_named_host_is_sent_after_an_off_loop_lookup() -> None:
    from telephony_agent.sip.endpoint import SipEndpoint
    from telephony_agent.sip.message import Headers, SipRequest
    from telephony_agent.sip.transaction import Peer

    loop = asyncio.get_running_loop()
    received: asyncio.Future[bytes] = loop.create_future()

    class Catch(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if not received.done():
                received.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Catch, local_addr=("127.0.0.1", 0))
    port = int(transport.get_extra_info("sockname")[1])
    endpoint = SipEndpoint(_Nobody())
    await endpoint.listen_udp("127.0.0.1", 0)
    try:
        headers = Headers(
            [
                ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnamed"),
                ("From", "<sip:a@127.0.0.1>;tag=1"),
                ("To", "<sip:b@localhost>"),
                ("Call-ID", "named-host"),
                ("CSeq", "1 ACK"),
            ]
        )
        endpoint.send_stateless(
            SipRequest("ACK", f"sip:b@localhost:{port}", headers), Peer("UDP", "localhost", port)
        )
        data = await asyncio.wait_for(received, 3.0)
    finally:
        await endpoint.close()
        transport.close()
    assert data.startswith(b"ACK sip:b@localhost")
    assert endpoint.stats.sent == 1
