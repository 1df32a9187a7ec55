"""The last resort: an exception a handler should never have raised is a counted 500,
logged once per site at debug, never a traceback at ERROR."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from telephony_agent.sip.endpoint import SipEndpoint
from telephony_agent.sip.last_resort import LastResort
from telephony_agent.sip.parser import parse_message


def _raise_here(value: str) -> None:
    raise ValueError(value)


@pytest.fixture
def debug_logging() -> Iterator[None]:
    """Debug lines pass whatever level an earlier test configured (restored after)."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(**saved)


def test_each_site_is_logged_once_at_debug_and_every_escape_counted(
    debug_logging: None,
) -> None:
    guard = LastResort()
    with capture_logs() as logs:
        for n in range(3):
            try:
                _raise_here(str(n))
            except ValueError as exc:
                guard.caught_exception("test", exc)
        try:
            raise KeyError("other")
        except KeyError as exc:
            guard.caught_exception("test", exc)
    assert guard.caught == 4
    assert len(guard.sites) == 2
    assert [entry["log_level"] for entry in logs] == ["debug", "debug"]
    assert all(entry["event"] == "sip_internal_error" for entry in logs)


class _Broken:
    def on_request(self, request: Any, transaction: Any, source: Any) -> None:
        raise RuntimeError("a bug")

    def on_ack_timeout(self, transaction: Any) -> None: ...


async def test_a_handler_that_raises_gets_its_request_a_500() -> None:
    loop = asyncio.get_running_loop()
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    class Catch(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            answers.put_nowait(data)

    endpoint = SipEndpoint(_Broken())
    host, port = await endpoint.listen_udp("127.0.0.1", 0)
    transport, _ = await loop.create_datagram_endpoint(
        Catch, local_addr=("127.0.0.1", 0), remote_addr=(host, port)
    )
    me = transport.get_extra_info("sockname")[1]
    try:
        with capture_logs() as logs:
            transport.sendto(
                (
                    f"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKbug;rport\r\n"
                    "From: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\n"
                    "Call-ID: bug\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                ).encode()
            )
            answer = parse_message(await asyncio.wait_for(answers.get(), 3.0))
    finally:
        transport.close()
        await endpoint.close()
    assert getattr(answer, "status", None) == 500
    assert endpoint.last_resort.caught == 1
    assert not [entry for entry in logs if entry["log_level"] in ("error", "critical")]
