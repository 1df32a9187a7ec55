"""Shared pieces for Call tests: a real local backend, a real client, a paced file leg."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from telephony_agent.audio.clock import MediaClock
from telephony_agent.call.bridge import Call, CallProfile
from telephony_agent.call.record import CallRecord
from telephony_agent.call.tools import default_registry
from telephony_agent.media.audiofile import decode_audio_file
from telephony_agent.media.file_leg import FileLeg
from telephony_agent.realtime.backend import BackendOptions, RunningBackend, start_backend
from telephony_agent.realtime.client import RealtimeSession
from telephony_agent.realtime.dialect import Dialect
from telephony_agent.realtime.providers import Endpoint
from telephony_agent.realtime.session_config import AudioFormat, SessionConfig, VadConfig

#: Ticks run four times faster than real time so a 10 s call takes 2.5 s of wall clock.
FAST_TICK_MS = 5


def sample_speech(rate: int) -> NDArray[np.int16]:
    """The bundled spoken sentence, decoded to `rate`."""
    path = Path(str(files("telephony_agent") / "samples" / "book_flight.wav"))
    return decode_audio_file(path, rate)


def noise_burst(rate: int, ms: int, seed: int, level: float = 6000.0) -> NDArray[np.int16]:
    """Speech-like band-limited noise: loud enough for an energy VAD, never silent."""
    rng = np.random.default_rng(seed)
    n = rate * ms // 1000
    white = rng.standard_normal(n + 16)
    smooth = np.convolve(white, np.ones(4) / 4, mode="same")[:n]
    envelope = 0.6 + 0.4 * np.sin(np.linspace(0, 6 * np.pi, n)) ** 2
    return np.clip(smooth * envelope * level, -32000, 32000).astype(np.int16)


def silence(rate: int, ms: int) -> NDArray[np.int16]:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


@dataclass
class CallResult:
    record: CallRecord
    leg: FileLeg
    backend: RunningBackend
    session: RealtimeSession


@asynccontextmanager
async def local_backend(options: BackendOptions) -> AsyncIterator[RunningBackend]:
    backend = await start_backend(options, host="127.0.0.1", port=0)
    try:
        yield backend
    finally:
        await backend.close()


async def run_file_call(
    caller: NDArray[np.int16],
    *,
    leg_rate: int,
    options: BackendOptions,
    tail_s: float = 1.0,
    tick_ms: int = FAST_TICK_MS,
    silence_duration_ms: int = 400,
    dialect: Dialect = Dialect.GA,
    profile: CallProfile | None = None,
    dtmf_at: dict[int, str] | None = None,
    session_class: type[RealtimeSession] = RealtimeSession,
    audio_format: AudioFormat = "pcm",
    output_rate: int = 24000,
) -> CallResult:
    """One whole call: FileLeg ⇄ Call ⇄ RealtimeSession ⇄ local backend over loopback."""
    async with local_backend(options) as backend:
        endpoint = Endpoint(url=backend.url, headers={}, dialect=dialect, name="local")
        tools = default_registry()
        config = SessionConfig(
            instructions="test",
            voice=None,
            vad=VadConfig(silence_duration_ms=silence_duration_ms, prefix_padding_ms=200),
            tools=tools.specs(),
            audio_format=audio_format,
            output_rate=output_rate,
        )
        session = session_class(endpoint, config)
        await session.connect()
        clock = MediaClock(interval_ms=tick_ms)
        leg = FileLeg(caller, leg_rate, clock, tail_s=tail_s, dtmf_at=dtmf_at)
        call = Call(
            leg=leg,
            session=session,
            clock=clock,
            tools=tools,
            profile=profile,
            provider="local",
        )
        try:
            record = await call.run()
        finally:
            clock.stop()
        return CallResult(record, leg, backend, session)
