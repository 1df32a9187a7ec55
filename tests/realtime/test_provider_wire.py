"""Each dialect's session as the server receives it, over a real websocket to the local
backend: Yandex's shape and text, GA's shape, G.711 both ways, the PCM fallback, and the
model list with its fatal not-found."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from telephony_agent.audio.g711 import ulaw_encode
from telephony_agent.config import Settings
from telephony_agent.config_provider import local_endpoint
from telephony_agent.media.leg import LegFormat
from telephony_agent.realtime.backend import BackendOptions, RunningBackend, start_backend
from telephony_agent.realtime.client import RealtimeSession
from telephony_agent.realtime.dialect import Dialect
from telephony_agent.realtime.errors import RealtimeModelError
from telephony_agent.realtime.events import (
    AssistantTranscriptDone,
    AudioDelta,
    ResponseDone,
    ServerEvent,
)
from telephony_agent.realtime.providers import Endpoint
from telephony_agent.realtime.session_config import SessionConfig
from telephony_agent.switchboard.session import session_config
from tests.backend.backend_wire import FAST, speech_like

WAIT_S = 10.0


async def backend(**options: object) -> RunningBackend:
    options.setdefault("realtime_factor", FAST)
    options.setdefault("capture", True)
    return await start_backend(BackendOptions(**options))  # type: ignore[arg-type]


@pytest.fixture
async def sessions() -> AsyncIterator[list[RealtimeSession]]:
    opened: list[RealtimeSession] = []
    yield opened
    for session in opened:
        await session.close()


def endpoint(running: RunningBackend, dialect: Dialect) -> Endpoint:
    return Endpoint(url=running.url, dialect=dialect, name="local", model="gpt-realtime")


async def turn(session: RealtimeSession, audio: bytes) -> list[ServerEvent]:
    """One manual turn: append, commit, create; every event up to its response.done."""
    session.append_audio(audio)
    session.commit()
    session.create_response()
    events: list[ServerEvent] = []
    async with asyncio.timeout(WAIT_S):
        async for event in session.events():
            events.append(event)
            if isinstance(event, ResponseDone):
                return events
    raise AssertionError("the session ended before the response")


def settings(**provider: object) -> Settings:
    base = Settings()
    return replace(
        base,
        provider=replace(base.provider, **provider),  # type: ignore[arg-type]
        local=replace(base.local, dialect="yandex"),
        vad=replace(base.vad, idle_timeout_ms=6000),
    )


async def test_yandex_session_as_the_server_sees_it_and_text_from_output_text(
    sessions: list[RealtimeSession],
) -> None:
    running = await backend(dialect="yandex")
    try:
        config = session_config(
            settings(),
            "local",
            dialect=Dialect.YANDEX,
            leg=LegFormat("G722", 16000),
            manual_turns=True,
        )
        config = replace(config, output_rate=16000, voice="marina")
        session = RealtimeSession(endpoint(running, Dialect.YANDEX), config)
        sessions.append(session)
        await session.connect()
        [received] = running.stats.session_objects
        assert "type" not in received
        assert received["output_modalities"] == ["text", "audio"]
        assert received["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert received["audio"]["output"] == {
            "format": {"type": "audio/pcm", "rate": 16000},
            "voice": "marina",
        }
        # The rate is read back from session.updated, which Yandex sends twice: ready once.
        assert session.output_rate == 16000
        assert session.protocol.ready_transitions == 1
        events = await turn(session, speech_like(600).tobytes())
        words = [e.text for e in events if isinstance(e, AssistantTranscriptDone)]
        assert len(words) == 1 and words[0].startswith("Echo of")
        assert running.stats.unsupported_requests == 0
        assert running.stats.client_errors == 0
    finally:
        await running.close()


async def test_yandex_never_gets_the_idle_timeout_it_does_not_support(
    sessions: list[RealtimeSession],
) -> None:
    running = await backend(dialect="yandex")
    try:
        config = session_config(settings(), "local", dialect=Dialect.YANDEX)
        assert config.vad is not None and config.vad.idle_timeout_ms == 6000
        session = RealtimeSession(endpoint(running, Dialect.YANDEX), config)
        sessions.append(session)
        await session.connect()
        detection = running.stats.session_objects[0]["audio"]["input"]["turn_detection"]
        assert detection["type"] == "server_vad" and "idle_timeout_ms" not in detection
        assert running.stats.unsupported_requests == 0
    finally:
        await running.close()


async def test_ga_session_with_semantic_vad_noise_reduction_and_extra(
    sessions: list[RealtimeSession],
) -> None:
    running = await backend()
    try:
        base = Settings()
        chosen = replace(
            base,
            vad=replace(base.vad, type="semantic_vad", eagerness="high"),
            agent=replace(base.agent, noise_reduction="far_field"),
            provider=replace(base.provider, extra={"max_output_tokens": 300}),
        )
        config = session_config(chosen, "local", dialect=Dialect.GA)
        session = RealtimeSession(endpoint(running, Dialect.GA), config)
        sessions.append(session)
        await session.connect()
        [received] = running.stats.session_objects
        assert received["type"] == "realtime"
        assert received["output_modalities"] == ["audio"]
        audio_in = received["audio"]["input"]
        assert audio_in["turn_detection"]["type"] == "semantic_vad"
        assert audio_in["turn_detection"]["eagerness"] == "high"
        assert audio_in["noise_reduction"] == {"type": "far_field"}
        assert received["max_output_tokens"] == 300
        assert running.stats.client_errors == 0
    finally:
        await running.close()


async def test_g711_goes_both_ways_byte_for_byte(sessions: list[RealtimeSession]) -> None:
    running = await backend()
    try:
        config = SessionConfig(instructions="x", vad=None, audio_format="pcmu")
        session = RealtimeSession(endpoint(running, Dialect.GA), config)
        sessions.append(session)
        await session.connect()
        assert session.audio_format == "pcmu" and session.output_rate == 8000
        caller = ulaw_encode(speech_like(700, rate=8000)).tobytes()
        events = await turn(session, caller)
        heard = b"".join(e.audio for e in events if isinstance(e, AudioDelta))
        assert bytes(running.stats.audio_in) == caller
        assert heard == bytes(running.stats.audio_out) and len(heard) > 4000
        assert session.stats["audio_bytes_sent"] == len(caller)
    finally:
        await running.close()


async def test_g711_refused_falls_back_to_pcm_for_the_call(
    sessions: list[RealtimeSession],
) -> None:
    running = await backend(dialect="yandex")
    try:
        forced = settings(g711_passthrough="on")
        config = session_config(
            forced, "local", dialect=Dialect.YANDEX, leg=LegFormat("PCMU", 8000), manual_turns=True
        )
        assert config.audio_format == "pcmu"
        session = RealtimeSession(endpoint(running, Dialect.YANDEX), config)
        sessions.append(session)
        await session.connect()
        assert session.audio_format == "pcm" and session.output_rate == 24000
        first, second = running.stats.session_objects
        assert first["audio"]["input"]["format"] == {"type": "audio/pcmu"}
        assert second["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        pcm = speech_like(400).tobytes()
        events = await turn(session, pcm)
        assert bytes(running.stats.audio_in) == pcm
        assert any(isinstance(e, AudioDelta) for e in events)
        assert session.stats["g711_fallbacks"] == 1
    finally:
        await running.close()


async def test_model_list_is_tried_in_order(sessions: list[RealtimeSession]) -> None:
    running = await backend(dialect="yandex", models=("speech-realtime-260528",))
    try:
        chosen = settings(model=("speech-realtime-250923", "speech-realtime-260528"))
        first = local_endpoint(chosen, running.port)
        assert first.dialect is Dialect.YANDEX
        assert [first.model, *(e.model for e in first.alternates)] == [
            "speech-realtime-250923",
            "speech-realtime-260528",
        ]
        session = RealtimeSession(first, SessionConfig(instructions="x"))
        sessions.append(session)
        await session.connect()
        assert session.endpoint.model == "speech-realtime-260528"
        assert (running.stats.connections, running.stats.unknown_models) == (2, 1)
    finally:
        await running.close()


@pytest.mark.parametrize("dialect", ["yandex", "ga"])
async def test_a_missing_model_fails_at_once_without_retries(
    sessions: list[RealtimeSession], dialect: str
) -> None:
    running = await backend(dialect=dialect, models=("speech-realtime-260528",))
    try:
        chosen = settings(model=("gone-1", "gone-2"))
        session = RealtimeSession(
            replace(
                local_endpoint(chosen, running.port),
                dialect=Dialect(dialect),
            ),
            SessionConfig(instructions="x"),
            connect_attempts=3,
            backoff_s=(1.0, 4.0),
        )
        sessions.append(session)
        started = time.monotonic()
        with pytest.raises(RealtimeModelError) as info:
            await session.connect()
        # One connection per model, none retried, and no backoff was slept.
        assert time.monotonic() - started < 1.0
        assert (running.stats.connections, running.stats.unknown_models) == (2, 2)
        message = str(info.value)
        assert "\n" not in message and "gone-2" in message and "tried gone-1, gone-2" in message
        if dialect == "yandex":
            assert "NOT_FOUND: Instance with model" in message
    finally:
        await running.close()
