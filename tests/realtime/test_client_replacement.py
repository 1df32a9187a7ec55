"""The real client replacing its connection: what the next connection is told after a
loss, and rollovers, where the next connection is opened ahead and the call switched to
it before the provider's lifetime ends, without losing caller audio."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog

from telephony_agent.realtime import client as client_module
from telephony_agent.realtime.backend import BackendOptions, RunningBackend
from telephony_agent.realtime.client import RealtimeSession
from telephony_agent.realtime.dialect import Dialect
from telephony_agent.realtime.events import (
    LINK_LOST,
    ResponseDone,
    ServerEvent,
    SessionCreated,
    SessionReconnected,
)
from telephony_agent.realtime.providers import Endpoint
from telephony_agent.realtime.recap import HEADER
from telephony_agent.realtime.session_config import SessionConfig, VadConfig
from tests.backend.backend_wire import speech_like
from tests.call.helpers import local_backend
from tests.realtime.scripted import GA_SESSION, Peer, ScriptedServer
from tests.realtime.test_client import collect, session_for

CHUNK = 960  # 20 ms at 24 kHz


def session_on(url: str, **options: Any) -> RealtimeSession:
    endpoint = Endpoint(url=url, headers={}, dialect=Dialect.GA, name="local")
    config = SessionConfig(instructions="test", vad=VadConfig(silence_duration_ms=400))
    return RealtimeSession(endpoint, config, ready_timeout_s=1.0, **options)


async def talk(session: RealtimeSession, seconds: float) -> bytes:
    """Caller speech without a pause, one 20 ms chunk per 20 ms of wall clock."""
    audio = speech_like(int(seconds * 1000), seed=5).astype("<i2").tobytes()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index in range(len(audio) // CHUNK):
        session.append_audio(audio[index * CHUNK : (index + 1) * CHUNK])
        await asyncio.sleep(max(0.0, start + (index + 1) * 0.02 - loop.time()))
    return audio


async def drain(session: RealtimeSession, into: list[ServerEvent]) -> None:
    async for event in session.events():
        into.append(event)


def continuous(sent: bytes, received: list[bytearray]) -> float:
    """Milliseconds of caller audio lost between the connections (negative: overlap)."""
    old, new = bytes(received[0]), bytes(received[1])
    assert sent.startswith(old)
    start = sent.find(new[:4800])
    assert start >= 0 and sent[start : start + len(new)] == new
    return (start - len(old)) / 48


@pytest.fixture
async def lifetime_backend(request: pytest.FixtureRequest) -> AsyncIterator[RunningBackend]:
    lifetime: float = request.param
    options = BackendOptions(session_expire_after_s=lifetime, keep_input_audio=True)
    async with local_backend(options) as backend:
        yield backend


@pytest.mark.parametrize("lifetime_backend", [3.0], indirect=True)
async def test_no_pause_forces_the_switch_at_the_last_safe_moment(
    lifetime_backend: RunningBackend,
) -> None:
    session = session_on(lifetime_backend.url, max_session_s=3.0)
    await session.connect()
    events: list[ServerEvent] = []
    reader = asyncio.create_task(drain(session, events))
    with structlog.testing.capture_logs() as logs:
        sent = await talk(session, 3.4)
    await session.close()
    await reader
    names = [entry["event"] for entry in logs]
    assert "realtime_rollover_forced" in names
    (rolled,) = [entry for entry in logs if entry["event"] == "realtime_session_rolled_over"]
    assert rolled["at_pause"] is False and rolled["age_s"] < 3.0
    assert SessionReconnected(0, rollover=True) in events
    assert lifetime_backend.stats.errors_by_code.get("session_expired", 0) == 0
    # The caller was mid-sentence: the new session got the sentence from its start.
    assert continuous(sent, lifetime_backend.stats.input_audio) <= -1000
    assert bytes(lifetime_backend.stats.input_audio[1]).startswith(sent[:CHUNK])


@pytest.mark.parametrize("lifetime_backend", [2.5], indirect=True)
async def test_a_ready_standby_replaces_a_lost_connection_at_once(
    lifetime_backend: RunningBackend,
) -> None:
    # The provider ends the session earlier than we were told: the standby opened for
    # the rollover takes over without a backoff or a new handshake.
    session = session_on(lifetime_backend.url, max_session_s=3.0)
    await session.connect()
    events: list[ServerEvent] = []
    reader = asyncio.create_task(drain(session, events))
    sent = await talk(session, 3.0)
    await session.close()
    await reader
    assert lifetime_backend.stats.connections == 2
    assert lifetime_backend.stats.errors_by_code["session_expired"] == 1
    assert SessionReconnected(1) in events
    assert session.stats["reconnects"] == 1 and session.stats.get("rollovers", 0) == 0
    assert continuous(sent, lifetime_backend.stats.input_audio) <= 0


async def test_a_failed_standby_is_tried_again_and_the_call_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "STANDBY_RETRY_S", 0.2)

    async def live(peer: Peer) -> None:
        await peer.handshake()
        await peer.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": "u1",
                "transcript": "Do you have a table tonight?",
            }
        )
        await peer.hold()

    async def refused(peer: Peer) -> None:
        await peer.send({"type": "session.created", "session": GA_SESSION})
        await peer.send({"type": "error", "error": {"type": "server_error", "message": "busy"}})
        await peer.hold()

    async def standby(peer: Peer) -> None:
        await peer.handshake()
        await peer.hold()

    async with ScriptedServer(live, refused, standby) as server:
        session = RealtimeSession(
            server.endpoint(), SessionConfig(instructions="test"), max_session_s=1.0
        )
        await session.connect()
        events: list[ServerEvent] = []
        reader = asyncio.create_task(drain(session, events))
        for _ in range(60):  # 1.2 s of silence: the rollover happens at a pause
            session.append_audio(bytes(CHUNK))
            await asyncio.sleep(0.02)
        await session.close()
        await reader
        assert server.attempts == 3
        assert SessionReconnected(0, rollover=True) in events
        # A standby's session.created reaches the consumer only when it is switched to.
        assert [e for e in events if isinstance(e, SessionCreated)] != []
        assert events.index(SessionReconnected(0, rollover=True)) > max(
            i for i, e in enumerate(events) if isinstance(e, SessionCreated)
        )
        new = server.peers[2]
        types = [e["type"] for e in new.received]
        assert types[:2] == ["session.update", "conversation.item.create"]
        assert set(types[2:]) == {"input_audio_buffer.append"}
        recap = new.received[1]["item"]["content"][0]["text"]
        assert recap == f"{HEADER}\nCaller: Do you have a table tonight?"


async def test_audio_appended_while_reconnecting_reaches_the_next_connection() -> None:
    async def close_then_slow(peer: Peer) -> None:
        await peer.handshake()
        await peer.start_response("r1", "a1")
        await peer.ws.close(1011, "boom")

    async def slow_second(peer: Peer) -> None:
        await asyncio.sleep(0.2)
        await peer.handshake()
        await peer.hold()

    async with ScriptedServer(close_then_slow, slow_second) as server:
        session = session_for(server.endpoint())
        await session.connect()
        await collect(session, lambda e: isinstance(e, ResponseDone))
        assert session.state == "reconnecting"
        spoken = bytes(range(256)) * 15  # 3840 bytes: four 20 ms chunks at 24 kHz
        session.append_audio(spoken)
        session.commit()
        session.create_response("Where were we?")
        await collect(session, lambda e: isinstance(e, SessionReconnected))
        assert session.stats.get("audio_bytes_dropped", 0) == 0
        assert session.stats["audio_bytes_held"] == len(spoken)
        second = server.peers[1]
        create = await second.expect("response.create")
        assert create["response"] == {"instructions": "Where were we?"}
        appends = second.of_type("input_audio_buffer.append")
        assert b"".join(base64.b64decode(a["audio"]) for a in appends) == spoken
        # Server VAD is on: the replayed turn is committed by the server, not by us.
        assert second.of_type("input_audio_buffer.commit") == []
        await session.close()


async def test_the_new_session_is_briefed_after_the_consumer_says_what_was_heard() -> None:
    question = bytes([7]) * 960 * 10

    async def answer_then_die(peer: Peer) -> None:
        await peer.handshake()
        await peer.expect("input_audio_buffer.append", nth=10)
        await peer.send({"type": "input_audio_buffer.committed", "item_id": "u1"})
        await peer.start_response("r1", "a1", audio=bytes(960))
        await peer.ws.close(1011, "boom")

    async def ready_at_once(peer: Peer) -> None:
        await peer.handshake()
        await peer.hold()

    async with ScriptedServer(answer_then_die, ready_at_once) as server:
        manual = SessionConfig(instructions="Be brief.", vad=None)
        session = RealtimeSession(
            server.endpoint(), manual, ready_timeout_s=1.0, backoff_s=(0.01, 0.05)
        )
        await session.connect()
        session.append_audio(question)
        session.commit()
        async with asyncio.timeout(5):
            async for event in session.events():
                if isinstance(event, ResponseDone) and event.reason == LINK_LOST:
                    # A consumer that plays audio takes a moment, then reports that
                    # the caller heard none of the answer (it was still in the pre-roll).
                    await asyncio.sleep(0.15)
                    session.truncate("a1", 0)
                if isinstance(event, SessionReconnected):
                    break
        second = server.peers[1]
        await second.expect("input_audio_buffer.append", nth=10)
        replayed = b"".join(
            base64.b64decode(e["audio"]) for e in second.of_type("input_audio_buffer.append")
        )
        assert question in replayed
        # The unheard answer left the question owed: committed again and answered.
        await second.expect("response.create")
        assert len(second.of_type("input_audio_buffer.commit")) == 1
        await session.close()
