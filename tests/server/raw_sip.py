"""A raw UDP SIP peer for tests: hand-written messages in, parsed messages out.

Why raw: tests of malformed input and of retransmission must send exactly the
bytes they mean, which no well-behaved stack (ours included) would produce.
"""

from __future__ import annotations

import asyncio
import secrets

from telephony_agent.sip.message import SipMessage, SipRequest, SipResponse
from telephony_agent.sip.parser import parse_message


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[bytes]) -> None:
        self.queue = queue

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        del addr
        self.queue.put_nowait(data)


class RawSip:
    """One UDP socket talking to the server at `port`."""

    def __init__(self, transport: asyncio.DatagramTransport, queue: asyncio.Queue[bytes]):
        self.transport = transport
        self.queue = queue
        self.port = int(transport.get_extra_info("sockname")[1])

    @classmethod
    async def open(cls, server_port: int, local_host: str = "127.0.0.1") -> RawSip:
        """A socket on `local_host` (any of 127.0.0.0/8: another caller's address)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Collector(queue),
            local_addr=(local_host, 0),
            remote_addr=("127.0.0.1", server_port),
        )
        return cls(transport, queue)

    def send(self, data: bytes | str) -> None:
        self.transport.sendto(data.encode() if isinstance(data, str) else data)

    async def receive(self, within_s: float = 3.0) -> SipMessage:
        data = await asyncio.wait_for(self.queue.get(), within_s)
        return parse_message(data)

    async def status_line(self, within_s: float = 3.0) -> str:
        """The first line of the next datagram, unparsed (a reply to a broken request
        copies the broken header, so it may not parse itself)."""
        data = await asyncio.wait_for(self.queue.get(), within_s)
        return data.split(b"\r\n", 1)[0].decode("utf-8", "replace")

    async def response(self, status: int | None = None, within_s: float = 5.0) -> SipResponse:
        """The next response (with `status` if given), skipping requests and others."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            message = await self.receive(max(0.01, deadline - loop.time()))
            if isinstance(message, SipResponse) and (status is None or message.status == status):
                return message

    async def request(self, method: str, within_s: float = 5.0) -> SipRequest:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            message = await self.receive(max(0.01, deadline - loop.time()))
            if isinstance(message, SipRequest) and message.method == method:
                return message

    async def silence(self, seconds: float) -> list[bytes]:
        """Everything that arrives within `seconds` (expected: nothing)."""
        await asyncio.sleep(seconds)
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items

    def close(self) -> None:
        self.transport.close()


def sdp_offer(port: int, codecs: str = "0 8 101", direction: str = "sendrecv") -> str:
    lines = [
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=audio {port} RTP/AVP {codecs}",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        f"a={direction}",
    ]
    return "\r\n".join(lines) + "\r\n"


def request(
    method: str,
    server_port: int,
    local_port: int,
    *,
    branch: str | None = None,
    call_id: str | None = None,
    cseq: int = 1,
    from_tag: str = "caller1",
    to_tag: str | None = None,
    body: str = "",
    extra: str = "",
) -> str:
    """A well-formed request as text, ready to be sent or deliberately damaged."""
    branch = branch or "z9hG4bK" + secrets.token_hex(6)
    call_id = call_id or secrets.token_hex(8)
    to = f"<sip:agent@127.0.0.1:{server_port}>" + (f";tag={to_tag}" if to_tag else "")
    content_type = "Content-Type: application/sdp\r\n" if body else ""
    return (
        f"{method} sip:agent@127.0.0.1:{server_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:tester@127.0.0.1>;tag={from_tag}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"Contact: <sip:tester@127.0.0.1:{local_port}>\r\n"
        f"{extra}"
        f"{content_type}"
        f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
    )
