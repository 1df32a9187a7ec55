"""A deliberately raw Realtime test client and synthetic caller audio.

The backend's tests must not depend on the project's own Realtime client (that client
is what the backend exists to test), so they speak JSON over `websockets` directly.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray
from websockets.asyncio.client import ClientConnection, connect

RATE = 24000
FAST = 50.0
"""realtime_factor used in tests: a 1 s response streams in 20 ms."""


def speech_like(ms: int, seed: int = 0, rate: int = RATE) -> NDArray[np.int16]:
    """Syllable-like bursts of telephone-band noise (~150 ms) with short quiet gaps."""
    rng = np.random.default_rng(seed)
    n = rate * ms // 1000
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spectrum[(freqs < 200) | (freqs > 3400)] = 0
    band = np.fft.irfft(spectrum, n)
    noise = band / max(float(np.std(band)), 1e-9) * 4000.0
    syllable = rate * 150 // 1000
    envelope = np.ones(n)
    gap = rate * 30 // 1000
    for start in range(syllable, n, syllable + gap):
        envelope[start : start + gap] = 0.01
    return np.clip(noise * envelope, -32768, 32767).astype(np.int16)


def silence(ms: int, rate: int = RATE) -> NDArray[np.int16]:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


def b64(pcm: NDArray[np.int16]) -> str:
    return base64.b64encode(pcm.astype("<i2").tobytes()).decode("ascii")


def pcm_of(events: list[dict[str, Any]], kind: str = "response.output_audio.delta") -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == kind)


class WireClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []
        self.raw: list[str | bytes] = []
        """Frames that were not JSON objects (junk-frame fault)."""

    @classmethod
    @asynccontextmanager
    async def open(
        cls, url: str, headers: dict[str, str] | None = None
    ) -> AsyncIterator[WireClient]:
        async with connect(url, additional_headers=headers, ping_interval=None) as ws:
            yield cls(ws)

    async def send(self, kind: str, **fields: Any) -> None:
        await self.ws.send(json.dumps({"type": kind, **fields}))

    async def next(self, within: float = 5.0) -> dict[str, Any]:
        while True:
            frame = await asyncio.wait_for(self.ws.recv(), within)
            try:
                event = json.loads(frame)
            except (ValueError, UnicodeDecodeError):
                self.raw.append(frame)
                continue
            self.seen.append(event)
            assert isinstance(event, dict)
            return event

    async def until(self, kind: str, within: float = 5.0) -> list[dict[str, Any]]:
        """Events up to and including the first of type `kind`."""
        got: list[dict[str, Any]] = []
        while True:
            event = await self.next(within)
            got.append(event)
            if event["type"] == kind:
                return got

    async def configure(self, session: dict[str, Any]) -> dict[str, Any]:
        await self.send("session.update", session=session)
        return (await self.until("session.updated"))[-1]

    async def append(self, pcm: NDArray[np.int16], chunk_ms: int = 20) -> None:
        step = RATE * chunk_ms // 1000
        for i in range(0, len(pcm), step):
            await self.send("input_audio_buffer.append", audio=b64(pcm[i : i + step]))


def vad_session(silence_ms: int = 300, **extra: Any) -> dict[str, Any]:
    td = {"type": "server_vad", "silence_duration_ms": silence_ms, "prefix_padding_ms": 100}
    td.update(extra)
    return {"type": "realtime", "audio": {"input": {"turn_detection": td}}}


MANUAL = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]
