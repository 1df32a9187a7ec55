"""Shared pieces for Call tests: a real local backend, a real client, a paced file leg."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from telephony_agent.audio.clock import MediaClock
from telephony_agent.audio.playout import Frame
from telephony_agent.call.bridge import Call, CallProfile, FrameRecorder
from telephony_agent.call.record import CallRecord
from telephony_agent.call.tools import ToolRegistry, default_registry
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


def line_noise(rate: int, samples: int, dbfs: float, seed: int) -> NDArray[np.float64]:
    """Steady hiss at `dbfs`, as a phone line adds it."""
    rng = np.random.default_rng(seed)
    out: NDArray[np.float64] = rng.standard_normal(samples) * 32768.0 * 10 ** (dbfs / 20)
    return out


class EchoLeg(FileLeg):
    """A caller on a speakerphone: what the agent plays comes back up the line.

    Each inbound frame is the caller's own audio plus the agent's frames sent
    `echo_delay_ms` earlier at `echo_db`, plus line noise: the agent's own voice is
    then in the caller's audio exactly as a hybrid or a loudspeaker would put it.
    """

    def __init__(
        self,
        caller_pcm: NDArray[np.int16],
        sample_rate: int,
        clock: MediaClock,
        *,
        tail_s: float = 1.0,
        dtmf_at: dict[int, str] | None = None,
        echo_db: float = -20.0,
        echo_delay_ms: int = 200,
        noise_dbfs: float = -60.0,
    ) -> None:
        super().__init__(caller_pcm, sample_rate, clock, tail_s=tail_s, dtmf_at=dtmf_at)
        self._gain = 10 ** (echo_db / 20)
        self._delay = sample_rate * echo_delay_ms // 1000
        n = self._frames.size
        self._noise = line_noise(sample_rate, n, noise_dbfs, seed=echo_delay_ms)
        self._clean = self._frames.copy()
        #: The agent's frames as one signal, indexed like the caller's audio.
        self._played = np.zeros(n + sample_rate, dtype=np.float64)
        self._played_at = 0
        #: For each inbound frame, how many agent frames had been sent when it went out:
        #: places a moment of the caller's audio on the agent's frame timeline.
        self.sent_when_heard: list[int] = []

    def send_frame(self, frame: Frame) -> None:
        super().send_frame(frame)
        start = self._played_at
        end = min(start + frame.pcm.size, self._played.size)
        self._played[start:end] = frame.pcm[: end - start]
        self._played_at = end

    def _on_tick(self, tick: int) -> None:
        index = self._next
        if index < len(self._frames):
            size = self.frame_samples
            start = index * size
            echo_start = start - self._delay
            echo = np.zeros(size)
            if echo_start + size > 0:
                lo = max(echo_start, 0)
                echo[lo - echo_start :] = self._played[lo : echo_start + size]
            mixed = self._clean[index] + self._gain * echo + self._noise[start : start + size]
            self._frames[index] = np.clip(np.rint(mixed), -32768, 32767).astype(np.int16)
            self.sent_when_heard.append(len(self.sent))
        super()._on_tick(tick)


LegFactory = Callable[[NDArray[np.int16], int, MediaClock, float, dict[int, str] | None], FileLeg]


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
    tools: ToolRegistry | None = None,
    recorder: FrameRecorder | None = None,
    session_options: dict[str, Any] | None = None,
    guard: bool = False,
    transcription_model: str | None = None,
    leg_factory: LegFactory | None = None,
    audio_format: AudioFormat = "pcm",
    output_rate: int = 24000,
) -> CallResult:
    """One whole call: FileLeg ⇄ Call ⇄ RealtimeSession ⇄ local backend over loopback.

    `guard` configures the session as the switchboard does with `[turns]` on: the
    server neither interrupts nor answers by itself, the Call decides and answers.
    """
    async with local_backend(options) as backend:
        endpoint = Endpoint(url=backend.url, headers={}, dialect=dialect, name="local")
        tools = tools or default_registry()
        config = SessionConfig(
            instructions="test",
            voice=None,
            vad=VadConfig(
                silence_duration_ms=silence_duration_ms,
                prefix_padding_ms=200,
                create_response=not guard,
                interrupt_response=not guard,
            ),
            tools=tools.specs(),
            transcription_model=transcription_model,
            audio_format=audio_format,
            output_rate=output_rate,
        )
        session = session_class(endpoint, config, **(session_options or {}))
        await session.connect()
        clock = MediaClock(interval_ms=tick_ms)
        make_leg: LegFactory = leg_factory or (
            lambda pcm, rate, clk, tail, dtmf: FileLeg(pcm, rate, clk, tail_s=tail, dtmf_at=dtmf)
        )
        leg = make_leg(caller, leg_rate, clock, tail_s, dtmf_at)
        call = Call(
            leg=leg,
            session=session,
            clock=clock,
            tools=tools,
            profile=profile,
            provider="local",
            recorder=recorder,
        )
        try:
            record = await call.run()
        finally:
            clock.stop()
        return CallResult(record, leg, backend, session)
