"""A deliberately naive SIP-to-Realtime bridge, the baseline `bench --baseline` runs.

    python -m telephony_agent.bench.naive_bridge WS_URL

What a first implementation typically looks like, written straight and not sabotaged:
an asyncio datagram protocol per socket, one Realtime websocket per call, a pacer task
per call that sleeps 20 ms between packets (`asyncio.sleep(0.02)`, so its period is
20 ms plus whatever the loop was busy with), each model delta resampled on its own and
each inbound packet resampled and sent on its own (soxr per chunk: a good library,
without kept state), G.711 through the project's tables, and the project's SIP parser
and SDP answer. It answers G.711 only. Comparing the agent with it in the same run
says what the agent's design buys on this machine today.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import signal
import struct
import sys
from typing import Any, cast

import numpy as np
import soxr
from websockets.asyncio.client import ClientConnection, connect

from telephony_agent.audio.g711 import G711Law, g711_decode, g711_encode
from telephony_agent.sip.message import NameAddr, SipParseError, SipRequest, SipResponse
from telephony_agent.sip.parser import parse_message
from telephony_agent.sip.sdp import SdpError, negotiate_answer, parse_sdp

MODEL_RATE = 24000
PHONE_RATE = 8000
_RTP = struct.Struct("!BBHII")
_LAWS: dict[str, G711Law] = {"PCMU": "pcmu", "PCMA": "pcma"}


class NaiveCall:
    """One call: its RTP socket, its websocket, its pacer and its outbound buffer."""

    def __init__(self, law: G711Law, payload_type: int, remote: tuple[str, int]) -> None:
        self.law = law
        self.payload_type = payload_type
        self.remote = remote
        self.outbound = bytearray()
        self.transport: asyncio.DatagramTransport | None = None
        self.ws: ClientConnection | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.sequence = secrets.randbits(16)
        self.timestamp = secrets.randbits(32)
        self.ssrc = secrets.randbits(32)

    async def pacer(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            chunk = bytes(self.outbound[:160])
            del self.outbound[:160]
            if len(chunk) < 160:
                chunk += bytes(g711_encode(np.zeros(160 - len(chunk), dtype=np.int16), self.law))
            header = _RTP.pack(0x80, self.payload_type, self.sequence, self.timestamp, self.ssrc)
            self.sequence = (self.sequence + 1) & 0xFFFF
            self.timestamp = (self.timestamp + 160) & 0xFFFFFFFF
            if self.transport is not None:
                self.transport.sendto(header + chunk, self.remote)

    async def reader(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            event = json.loads(message)
            if event.get("type") == "response.output_audio.delta":
                pcm = np.frombuffer(base64.b64decode(event["delta"]), dtype=np.int16)
                phone = soxr.resample(pcm, MODEL_RATE, PHONE_RATE)
                self.outbound += bytes(g711_encode(np.asarray(phone, dtype=np.int16), self.law))

    def heard(self, packet: bytes) -> None:
        if len(packet) < 12 or self.ws is None:
            return
        pcm = g711_decode(packet[12:], self.law)
        wide = np.asarray(soxr.resample(pcm, PHONE_RATE, MODEL_RATE), dtype=np.int16)
        audio = base64.b64encode(wide.tobytes()).decode("ascii")
        event = json.dumps({"type": "input_audio_buffer.append", "audio": audio})
        task = asyncio.ensure_future(self.ws.send(event))
        task.add_done_callback(_ignore)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self.transport is not None:
            self.transport.close()


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, call: NaiveCall) -> None:
        self.call = call

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.call.heard(data)


class NaiveBridge(asyncio.DatagramProtocol):
    """The SIP side: answers each INVITE once its websocket is configured."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.transport: asyncio.DatagramTransport | None = None
        self.calls: dict[str, NaiveCall] = {}
        self.answers: dict[str, bytes] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = parse_message(data)
        except SipParseError:
            return
        if not isinstance(message, SipRequest):
            return
        key = message.call_id
        if message.method == "INVITE":
            if self.answers.get(key):
                self._send(self.answers[key], addr)  # our 200 was lost: the same again
            elif key not in self.answers:
                self.answers[key] = b""
                asyncio.ensure_future(self._answer(message, addr)).add_done_callback(_ignore)
        elif message.method == "BYE":
            self._send(_response(message, 200, "OK"), addr)
            call = self.calls.pop(key, None)
            self.answers.pop(key, None)
            if call is not None:
                asyncio.ensure_future(call.close()).add_done_callback(_ignore)

    async def _answer(self, invite: SipRequest, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            offer = parse_sdp(invite.body)
        except SdpError:
            self._send(_response(invite, 488, "Not Acceptable Here"), addr)
            return
        user = NameAddr.parse(invite.headers.get("From") or "").uri
        ws = await connect(self.url, max_size=2**24, ping_interval=None, compression=None)
        await ws.send(json.dumps(_session_update(user)))
        call = NaiveCall("pcmu", 0, ("127.0.0.1", 0))  # codec and peer set once agreed
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _RtpProtocol(call), local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        try:
            agreed = negotiate_answer(
                offer,
                local_address="127.0.0.1",
                local_port=port,
                codec_preference=["PCMU", "PCMA"],
                session_id=secrets.randbits(31),
                session_version=1,
            )
        except SdpError:
            transport.close()
            await ws.close()
            self._send(_response(invite, 488, "Not Acceptable Here"), addr)
            return
        call.law = _LAWS[agreed.codec.upper()]
        call.payload_type = agreed.payload_type
        call.remote = agreed.remote_rtp
        call.transport = transport
        call.ws = ws
        call.tasks = [asyncio.create_task(call.pacer()), asyncio.create_task(call.reader())]
        self.calls[invite.call_id] = call
        ok = _response(invite, 200, "OK", tag=secrets.token_hex(4))
        ok_message = parse_message(ok)
        ok_message.headers.add("Contact", "<sip:naive@127.0.0.1>")
        ok_message.headers.add("Content-Type", "application/sdp")
        ok_message.body = agreed.answer.to_bytes()
        answer = ok_message.to_bytes()
        self.answers[invite.call_id] = answer
        self._send(answer, addr)

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)


def _session_update(user: str) -> dict[str, Any]:
    pcm = {"type": "audio/pcm", "rate": MODEL_RATE}
    return {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "instructions": user,
            "audio": {"input": {"format": pcm}, "output": {"format": pcm}},
        },
    }


def _response(request: SipRequest, status: int, reason: str, tag: str | None = None) -> bytes:
    response = SipResponse(status, reason)
    for via in request.headers.get_all("Via"):
        response.headers.add("Via", via)
    to = request.headers.get("To") or ""
    if tag is not None and ";tag=" not in to:
        to = f"{to};tag={tag}"
    response.headers.add("From", request.headers.get("From") or "")
    response.headers.add("To", to)
    response.headers.add("Call-ID", request.call_id)
    response.headers.add("CSeq", request.headers.get("CSeq") or "")
    return response.to_bytes()


def _ignore(task: asyncio.Future[Any]) -> None:
    """Read a finished task's outcome so a failed send is not reported as never retrieved."""
    if not task.cancelled():
        task.exception()


async def serve(url: str) -> None:
    loop = asyncio.get_running_loop()
    bridge = NaiveBridge(url)
    transport, _ = await loop.create_datagram_endpoint(lambda: bridge, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"telephony-agent: answering SIP on 127.0.0.1:{port} (naive bridge)", flush=True)
    await stop.wait()
    for call in list(bridge.calls.values()):
        await call.close()
    transport.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
