"""A fake browser leg, its factory, and a running HTTP server in front of a real SIP server.

Why a fake leg: these tests are about signalling (status codes, headers, the call
registry, events to the page), not about ICE and DTLS. The fake answers with a fixed
SDP, can play a scripted caller into the Call, and records every event sent to the
page — dropping them once closed, as a closed data channel would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from numpy.typing import NDArray

from telephony_agent.audio.clock import MediaClock
from telephony_agent.audio.playout import Frame
from telephony_agent.media.leg import AudioIn, LegEnded, LegEvent
from telephony_agent.media.webrtc import IceServer
from telephony_agent.server.http_app import HttpServer, LegFactory
from telephony_agent.server.sip_server import AgentSipServer
from tests.call.helpers import noise_burst, silence
from tests.server.conftest import _running_server

RATE = 48000
FRAME = RATE // 50
FAKE_ANSWER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:111 opus/48000/2\r\n"
)
OFFER = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"


def spoken_turn() -> NDArray[np.int16]:
    """Speech-like noise then enough silence for the backend's VAD to end the turn."""
    return np.concatenate([noise_burst(RATE, 800, seed=7), silence(RATE, 1200)])


class FakeLeg:
    """Stands in for ``WebRtcLeg``: same members, no peer connection."""

    sample_rate = RATE
    codec = "opus"

    def __init__(self, offer_sdp: str, caller: NDArray[np.int16] | None) -> None:
        self.offer_sdp = offer_sdp
        self.answer_sdp = FAKE_ANSWER
        self._caller = caller
        self.sent: list[dict[str, object]] = []
        self.frames_out = 0
        self.closed = asyncio.Event()
        self.end_reason: str | None = None
        self.hangup_reason: str | None = None

    def events(self) -> AsyncIterator[LegEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[LegEvent]:
        caller = self._caller
        if caller is not None:
            for start in range(0, caller.size - FRAME + 1, FRAME):
                if self.closed.is_set():
                    break
                yield AudioIn(caller[start : start + FRAME].copy())
                await asyncio.sleep(0.001)
        await self.closed.wait()
        yield LegEnded(self.end_reason or "closed")

    def send_frame(self, frame: Frame) -> None:
        del frame
        self.frames_out += 1

    async def hangup(self, reason: str) -> None:
        self.hangup_reason = self.hangup_reason or reason
        self._close(reason)

    def send_event(self, payload: Mapping[str, object]) -> None:
        if not self.closed.is_set():
            self.sent.append(dict(payload))

    async def close(self) -> None:
        self._close("closed")

    def _close(self, reason: str) -> None:
        if not self.closed.is_set():
            self.end_reason = reason
            self.closed.set()

    def events_of(self, kind: str) -> list[dict[str, object]]:
        return [event for event in self.sent if event.get("type") == kind]


@dataclass
class FakeLegFactory:
    """Answers every offer with a :class:`FakeLeg`, or raises `error` when set."""

    caller: NDArray[np.int16] | None = None
    error: BaseException | None = None
    legs: list[FakeLeg] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(
        self,
        offer_sdp: str,
        *,
        clock: MediaClock,
        ice_servers: Sequence[IceServer],
        allow_loopback: bool,
        ice_timeout_s: float,
    ) -> FakeLeg:
        self.calls.append(
            {
                "clock": clock,
                "ice_servers": tuple(ice_servers),
                "allow_loopback": allow_loopback,
                "ice_timeout_s": ice_timeout_s,
            }
        )
        if self.error is not None:
            raise self.error
        leg = FakeLeg(offer_sdp, self.caller)
        self.legs.append(leg)
        return leg


@dataclass
class Rig:
    sip: AgentSipServer
    http: HttpServer
    factory: LegFactory
    client: aiohttp.ClientSession

    @property
    def fake(self) -> FakeLegFactory:
        assert isinstance(self.factory, FakeLegFactory)
        return self.factory

    async def health(self) -> dict[str, Any]:
        async with self.client.get("/health") as response:
            assert response.status == 200
            data: dict[str, Any] = await response.json()
            return data


@asynccontextmanager
async def running_http(
    *,
    token: str | None = None,
    factory: LegFactory | None = None,
    environ: Mapping[str, str] | None = None,
    **sections: dict[str, Any],
) -> AsyncIterator[Rig]:
    """A real SIP server (local backend), our HTTP server on 127.0.0.1:0, and a client."""
    leg_factory = factory or FakeLegFactory()
    async with _running_server(**sections) as sip:
        http = HttpServer(
            sip.switchboard,
            sip=sip,
            token=token,
            leg_factory=leg_factory,
            environ=environ or {},
        )
        await http.start("127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{http.port}") as client:
                yield Rig(sip, http, leg_factory, client)
        finally:
            await http.close()


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll `predicate()` until true; fail the test with a clear message on timeout."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)
