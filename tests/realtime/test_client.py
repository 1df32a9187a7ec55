"""The asyncio shell against tiny scripted servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import structlog

from telephony_agent.realtime.client import RealtimeSession
from telephony_agent.realtime.dialect import Dialect
from telephony_agent.realtime.errors import (
    RealtimeAuthError,
    RealtimeConfigError,
    RealtimeConnectError,
    RealtimeError,
    RealtimeProtocolError,
)
from telephony_agent.realtime.events import (
    InputTranscript,
    ResponseCreated,
    ResponseDone,
    ServerError,
    ServerEvent,
    SessionClosed,
    SessionCreated,
    SessionReconnected,
    SessionUpdated,
    SpeechStarted,
)
from telephony_agent.realtime.providers import Endpoint
from telephony_agent.realtime.recap import HEADER
from telephony_agent.realtime.session_config import SessionConfig
from tests.realtime.scripted import (
    GA_SESSION,
    Peer,
    RawServer,
    ScriptedServer,
    read_client_frame,
    read_http_request,
    server_frame,
    text_frame,
    upgrade_response,
)

# A key shape no redaction pattern knows: if it leaks, nothing masks it for us.
KEY = "q7ZrXkLm2PvT9sWbHd4"
HEADERS = {"X-Test-Key": KEY}
FAST = {"ready_timeout_s": 1.0, "backoff_s": (0.01, 0.05)}


def session_for(endpoint: Endpoint, **kwargs: Any) -> RealtimeSession:
    options: dict[str, Any] = {**FAST, **kwargs}
    return RealtimeSession(endpoint, SessionConfig(instructions="Be brief."), **options)


async def collect(
    session: RealtimeSession,
    until: Callable[[ServerEvent], bool],
    within: float = 5.0,
) -> list[ServerEvent]:
    events: list[ServerEvent] = []
    async with asyncio.timeout(within):
        async for event in session.events():
            events.append(event)
            if until(event):
                break
    return events


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def ready_then_hold(peer: Peer) -> None:
    await peer.handshake()
    await peer.hold()


# ---------------------------------------------------------------- happy path


async def test_connect_configures_streams_audio_and_closes() -> None:
    async with ScriptedServer(ready_then_hold) as server:
        session = session_for(server.endpoint(HEADERS))
        await session.connect()
        peer = server.peers[0]
        assert server.request_headers[0]["X-Test-Key"] == KEY
        update = peer.of_type("session.update")[0]
        assert update["session"]["type"] == "realtime"
        assert update["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert session.state == "open"
        session.append_audio(bytes(960 * 2 + 500))
        session.append_audio(bytes(460))  # completes a third 20 ms chunk
        session.commit()
        await peer.expect("input_audio_buffer.commit")
        appends = [base64.b64decode(e["audio"]) for e in peer.of_type("input_audio_buffer.append")]
        assert [len(a) for a in appends] == [960, 960, 960]
        await session.close()
        events = [e async for e in session.events()]
        assert isinstance(events[0], SessionCreated)
        assert isinstance(events[1], SessionUpdated)
        assert events[-1] == SessionClosed("closed by client")
        assert [e async for e in session.events()] == []  # ended for good
        await session.close()  # idempotent


async def test_output_rate_read_back_from_session_updated() -> None:
    async def script(peer: Peer) -> None:
        await peer.handshake(output_rate=48000)
        await peer.hold()

    async with ScriptedServer(script) as server:
        session = session_for(server.endpoint())
        assert session.output_rate == 24000
        await session.connect()
        assert session.output_rate == 48000
        updated = await collect(session, lambda e: isinstance(e, SessionUpdated))
        assert updated[-1] == SessionUpdated(48000, 24000, updated[-1].raw, "pcm", "pcm")  # type: ignore[union-attr]
        await session.close()


async def test_ready_without_session_updated_after_timeout() -> None:
    async def script(peer: Peer) -> None:
        await peer.handshake(updated=False)
        await peer.hold()

    async with ScriptedServer(script) as server:
        session = session_for(server.endpoint(), ready_timeout_s=0.2)
        with structlog.testing.capture_logs() as logs:
            started = time.monotonic()
            await session.connect()
        assert 0.15 < time.monotonic() - started < 1.5
        assert [e["event"] for e in logs].count("realtime_session_updated_missing") == 1
        assert session.protocol.ready_transitions == 1
        await session.close()


async def test_queued_create_response_goes_out_after_response_done() -> None:
    async def script(peer: Peer) -> None:
        await peer.handshake()
        await peer.start_response("r1", "a1", audio=bytes(480))
        await peer.expect("response.cancel")
        await peer.send({"type": "response.done", "response": {"id": "r1", "status": "cancelled"}})
        await peer.hold()

    async with ScriptedServer(script) as server:
        session = session_for(server.endpoint())
        await session.connect()
        await collect(session, lambda e: isinstance(e, ResponseCreated))
        assert session.response_active
        session.create_response("Continue.")
        session.create_response("Continue.")
        session.cancel_response()
        session.cancel_response()
        done = await collect(session, lambda e: isinstance(e, ResponseDone))
        assert done[-1] == ResponseDone("r1", "cancelled")
        peer = server.peers[0]
        create = await peer.expect("response.create")
        assert create["response"] == {"instructions": "Continue."}
        await asyncio.sleep(0.05)
        assert len(peer.of_type("response.create")) == 1
        assert len(peer.of_type("response.cancel")) == 1
        await session.close()


async def test_bulk_append_is_delivered_whole_and_backlog_is_bounded() -> None:
    async with ScriptedServer(ready_then_hold) as server:
        session = session_for(server.endpoint())
        await session.connect()
        session.append_audio(bytes(48 * 4000))  # 4 s at once, like a file upload
        session.commit()
        peer = server.peers[0]
        await peer.expect("input_audio_buffer.commit")
        assert len(peer.of_type("input_audio_buffer.append")) == 200
        assert session.stats.get("audio_bytes_dropped", 0) == 0
        await session.close()
    async with ScriptedServer(ready_then_hold) as server:
        session = session_for(server.endpoint(), max_queued_audio_ms=100)
        await session.connect()
        link = session._live()
        assert link is not None
        # The socket has not taken what it was given (a slow network): appends wait for
        # the writer instead of being written at once, and the writer cannot run in between.
        pending = link.ws.transport.get_write_buffer_size
        link.ws.transport.get_write_buffer_size = lambda: 1  # type: ignore[method-assign]
        session.append_audio(bytes(960 * 20))
        link.ws.transport.get_write_buffer_size = pending  # type: ignore[method-assign]
        session.commit()
        peer = server.peers[0]
        await peer.expect("input_audio_buffer.commit")
        assert len(peer.of_type("input_audio_buffer.append")) == 5
        assert session.stats["audio_bytes_dropped"] == 960 * 15
        await session.close()


async def test_appends_written_at_once_keep_their_order_behind_queued_events() -> None:
    """An append skips the writer only when nothing waits in its queue: an event queued
    just before it (a `response.create`) still reaches the server first."""
    async with ScriptedServer(ready_then_hold) as server:
        session = session_for(server.endpoint())
        await session.connect()
        chunk = bytes(960)
        session.append_audio(chunk, time.monotonic())  # nothing queued: written at once
        session.create_response()
        session.append_audio(chunk, time.monotonic())  # behind the create, via the writer
        session.append_audio(chunk, time.monotonic())
        session.commit()
        peer = server.peers[0]
        await peer.expect("input_audio_buffer.commit")
        kinds = [e["type"] for e in peer.received if e["type"] != "session.update"]
        assert kinds == [
            "input_audio_buffer.append",
            "response.create",
            "input_audio_buffer.append",
            "input_audio_buffer.append",
            "input_audio_buffer.commit",
        ]
        assert len(session.uplink_latency) == 3
        await session.close()


async def test_non_fatal_error_is_yielded_and_matched_to_what_we_sent() -> None:
    async def script(peer: Peer) -> None:
        await peer.handshake()
        append = await peer.expect("input_audio_buffer.append")
        await peer.send(
            {
                "type": "error",
                "event_id": "srv_9",
                "error": {
                    "type": "invalid_request_error",
                    "code": "invalid_value",
                    "message": "Invalid 'audio'.",
                    "param": "audio",
                    "event_id": append["event_id"],
                },
            }
        )
        await peer.send({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0})
        await peer.hold()

    async with ScriptedServer(script) as server:
        session = session_for(server.endpoint())
        await session.connect()
        session.append_audio(bytes(960))
        events = await collect(session, lambda e: isinstance(e, SpeechStarted))
        errors = [e for e in events if isinstance(e, ServerError)]
        assert len(errors) == 1
        assert errors[0].code == "invalid_value"
        assert errors[0].sent_type == "input_audio_buffer.append"
        assert session.state == "open"
        await session.close()


# ---------------------------------------------------------------- setup failures


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_rejected_on_upgrade_fails_fast_without_retry(status: int) -> None:
    async with ScriptedServer(ready_then_hold, reject_status=status) as server:
        session = session_for(server.endpoint(HEADERS), connect_attempts=5)
        started = time.monotonic()
        with pytest.raises(RealtimeAuthError) as info:
            await session.connect()
        assert time.monotonic() - started < 1.0
        assert server.attempts == 1
        assert f"HTTP {status}" in str(info.value)
        assert KEY not in str(info.value)
        events = [e async for e in session.events()]
        assert isinstance(events[-1], SessionClosed)


@pytest.mark.parametrize("status", [404, 200, 400])
async def test_non_upgrade_status_is_protocol_error(status: int) -> None:
    async with ScriptedServer(ready_then_hold, reject_status=status) as server:
        session = session_for(server.endpoint())
        with pytest.raises(RealtimeProtocolError, match=f"HTTP {status}"):
            await session.connect()
        assert server.attempts == 1


async def test_plain_http_server_is_protocol_error() -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_http_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nhi\n"
        )
        await writer.drain()

    async with RawServer(plain) as server:
        endpoint = Endpoint(f"ws://127.0.0.1:{server.port}/", HEADERS, Dialect.GA, "plain")
        with pytest.raises(RealtimeProtocolError, match="HTTP 200") as info:
            await session_for(endpoint).connect()
        assert "127.0.0.1" in str(info.value)
        assert server.connections == 1


async def test_peer_that_does_not_speak_http_is_protocol_error() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        await reader.read(100)

    async with RawServer(garbage) as server:
        endpoint = Endpoint(f"ws://127.0.0.1:{server.port}/", {}, Dialect.GA, "ssh")
        with pytest.raises(RealtimeProtocolError, match="not a websocket server"):
            await session_for(endpoint).connect()


async def test_websocket_without_session_created_is_protocol_error() -> None:
    async with ScriptedServer(Peer.hold) as server:
        session = session_for(server.endpoint(), ready_timeout_s=0.2)
        with pytest.raises(RealtimeProtocolError, match=r"no session\.created"):
            await session.connect()
        assert server.attempts == 1


async def test_close_1008_right_after_upgrade_is_auth_error() -> None:
    async def script(peer: Peer) -> None:
        await peer.ws.close(1008, "invalid api key")

    async with ScriptedServer(script) as server:
        session = session_for(server.endpoint(), connect_attempts=4)
        with pytest.raises(RealtimeAuthError, match="1008"):
            await session.connect()
        assert server.attempts == 1


async def test_close_4000_beta_shape_is_protocol_error() -> None:
    async def script(peer: Peer) -> None:
        await peer.send({"type": "session.created", "session": GA_SESSION})
        await peer.expect("session.update")
        await peer.send(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "code": "beta_api_shape_disabled",
                    "message": "The beta shape is no longer supported.",
                },
            }
        )
        await peer.ws.close(4000, "beta_api_shape_disabled")

    async with ScriptedServer(script) as server:
        session = session_for(server.endpoint(), connect_attempts=4)
        with pytest.raises(RealtimeProtocolError, match="beta_api_shape_disabled"):
            await session.connect()
        assert server.attempts == 1


async def test_close_4000_alone_is_protocol_error() -> None:
    async def script(peer: Peer) -> None:
        await peer.send({"type": "session.created", "session": GA_SESSION})
        await peer.ws.close(4000, "")

    async with ScriptedServer(script) as server:
        with pytest.raises(RealtimeProtocolError, match="4000"):
            await session_for(server.endpoint()).connect()
        assert server.attempts == 1


async def test_rejected_session_update_is_config_error() -> None:
    async def script(peer: Peer) -> None:
        await peer.send({"type": "session.created", "session": GA_SESSION})
        update = await peer.expect("session.update")
        await peer.send(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "code": "invalid_value",
                    "message": "Invalid voice.",
                    "param": "session.audio.output.voice",
                    "event_id": update["event_id"],
                },
            }
        )
        await peer.hold()

    async with ScriptedServer(script) as server:
        with pytest.raises(RealtimeConfigError, match=r"Invalid voice\..*output\.voice"):
            await session_for(server.endpoint()).connect()


async def test_connection_refused_retries_then_connect_error() -> None:
    port = free_port()
    endpoint = Endpoint(f"ws://127.0.0.1:{port}/v1/realtime", HEADERS, Dialect.GA, "down")
    session = session_for(endpoint, connect_attempts=3)
    with structlog.testing.capture_logs() as logs:
        started = time.monotonic()
        with pytest.raises(RealtimeConnectError, match="after 3 attempts") as info:
            await session.connect()
    assert time.monotonic() - started < 2.0
    assert [e["event"] for e in logs].count("realtime_connect_failed") == 3
    assert KEY not in str(info.value)


async def test_server_error_on_upgrade_is_retried() -> None:
    async with ScriptedServer(ready_then_hold, reject_status=503) as server:
        with pytest.raises(RealtimeConnectError, match="HTTP 503"):
            await session_for(server.endpoint(), connect_attempts=2).connect()
        assert server.attempts == 2


# ---------------------------------------------------------------- mid-call faults


def transcript_then_active_response(close: Callable[[Peer], Any]) -> Callable[[Peer], Any]:
    async def script(peer: Peer) -> None:
        await peer.handshake()
        await peer.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": "u1",
                "content_index": 0,
                "transcript": "I need a flight to Paris.",
            }
        )
        await peer.start_response("r1", "a1", audio=bytes(960))
        await peer.finish_response("r1", "Which day would you like to fly?", "a1")
        await peer.start_response("r2", "a2", audio=bytes(960))
        await asyncio.sleep(0.05)
        await close(peer)

    return script


async def assert_reconnected(server: ScriptedServer, session: RealtimeSession) -> None:
    events = await collect(session, lambda e: isinstance(e, SessionReconnected))
    assert events[-1] == SessionReconnected(1)
    synthetic = [e for e in events if isinstance(e, ResponseDone) and e.response_id == "r2"]
    assert synthetic == [ResponseDone("r2", "cancelled", "session_reconnected")]
    assert events.index(synthetic[0]) < len(events) - 1
    assert session.state == "open"
    second = server.peers[1]
    assert (
        second.of_type("session.update")[0]["session"]
        == (server.peers[0].of_type("session.update")[0]["session"])
    )
    recap = await second.expect("conversation.item.create")
    assert recap["item"]["role"] == "system"
    assert recap["item"]["content"][0]["text"] == (
        f"{HEADER}\nCaller: I need a flight to Paris.\nAgent: Which day would you like to fly?"
    )
    assert [e["type"] for e in second.received[:2]] == [
        "session.update",
        "conversation.item.create",
    ]
    # The new connection carries audio again.
    session.append_audio(bytes(960))
    await second.expect("input_audio_buffer.append")


async def test_close_1011_mid_response_reconnects_with_recap() -> None:
    async def close_1011(peer: Peer) -> None:
        await peer.ws.close(1011, "internal error")

    async with ScriptedServer(transcript_then_active_response(close_1011), ready_then_hold) as s:
        session = session_for(s.endpoint())
        await session.connect()
        await assert_reconnected(s, session)
        assert session.stats["reconnects"] == 1
        await session.close()


async def test_abnormal_close_1006_reconnects() -> None:
    async def drop(peer: Peer) -> None:
        peer.ws.transport.abort()

    async with ScriptedServer(transcript_then_active_response(drop), ready_then_hold) as s:
        session = session_for(s.endpoint())
        await session.connect()
        await assert_reconnected(s, session)
        await session.close()


async def test_session_expired_then_close_1001_reconnects() -> None:
    async def expire(peer: Peer) -> None:
        await peer.send(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "code": "session_expired",
                    "message": "Your session hit the maximum duration of 60 minutes.",
                },
            }
        )
        await peer.ws.close(1001, "going away")

    async with ScriptedServer(transcript_then_active_response(expire), ready_then_hold) as s:
        session = session_for(s.endpoint())
        await session.connect()
        await assert_reconnected(s, session)
        await session.close()


async def test_reconnects_exhausted_end_the_session() -> None:
    async def first(peer: Peer) -> None:
        await peer.handshake()
        await peer.start_response("r1", "a1")
        await peer.ws.close(1011, "boom")

    async def broken(peer: Peer) -> None:
        await peer.ws.close(1011, "still broken")

    async with ScriptedServer(first, broken) as server:
        session = session_for(server.endpoint(), max_reconnects=2)
        await session.connect()
        events = await collect(session, lambda e: False)
        assert isinstance(events[-1], SessionClosed)
        assert "gave up after 2 reconnect attempts" in events[-1].reason
        assert ResponseDone("r1", "cancelled", "session_reconnected") in events
        assert server.attempts == 3
        assert session.state == "closed"


async def test_no_reconnect_when_disabled() -> None:
    async def first(peer: Peer) -> None:
        await peer.handshake()
        await peer.start_response("r1", "a1")
        await peer.ws.close(1011, "boom")

    async with ScriptedServer(first) as server:
        session = session_for(server.endpoint(), max_reconnects=0)
        await session.connect()
        events = await collect(session, lambda e: False)
        assert events[-2:] == [
            ResponseDone("r1", "cancelled", "session_closed"),
            SessionClosed("connection lost (close code 1011 boom)"),
        ]
        assert server.attempts == 1


async def test_mid_call_close_1008_ends_without_reconnect() -> None:
    async def first(peer: Peer) -> None:
        await peer.handshake()
        await peer.ws.close(1008, "key revoked")

    async with ScriptedServer(first) as server:
        session = session_for(server.endpoint())
        await session.connect()
        events = await collect(session, lambda e: False)
        assert isinstance(events[-1], SessionClosed)
        assert "1008" in events[-1].reason
        await asyncio.sleep(0.05)
        assert server.attempts == 1


async def test_mid_call_beta_shape_error_ends_without_reconnect() -> None:
    async def first(peer: Peer) -> None:
        await peer.handshake()
        await peer.send(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "code": "beta_api_shape_disabled",
                    "message": "beta is gone",
                },
            }
        )
        await peer.ws.close(4000, "beta_api_shape_disabled")

    async with ScriptedServer(first) as server:
        session = session_for(server.endpoint())
        await session.connect()
        events = await collect(session, lambda e: False)
        errors = [e for e in events if isinstance(e, ServerError)]
        assert [e.code for e in errors] == ["beta_api_shape_disabled"]
        assert isinstance(events[-1], SessionClosed)
        assert server.attempts == 1


async def test_non_json_and_binary_frames_are_skipped() -> None:
    async def script(peer: Peer) -> None:
        await peer.handshake()
        await peer.ws.send("this is not json")
        await peer.ws.send("[1, 2, 3]")
        await peer.ws.send(b"\x00\x01binary")
        await peer.send({"type": "foo.bar", "extra": True})
        await peer.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": "u1",
                "transcript": "hello",
                "unexpected": {"field": 1},
            }
        )
        await peer.hold()

    async with ScriptedServer(script) as server:
        session = session_for(server.endpoint())
        await session.connect()
        events = await collect(session, lambda e: isinstance(e, InputTranscript))
        assert events[-1] == InputTranscript("u1", "hello", final=True)
        assert session.stats["unreadable_frames"] == 2
        assert session.stats["binary_frames"] == 1
        assert session.state == "open"
        await session.close()


async def test_unanswered_pings_do_not_end_the_session() -> None:
    pings = 0
    pongs_sent = 0

    async def no_pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal pings
        writer.write(upgrade_response(await read_http_request(reader)))
        created = {"type": "session.created", "session": GA_SESSION}
        writer.write(text_frame(json.dumps(created)))
        await writer.drain()
        opcode, payload = await read_client_frame(reader)
        assert opcode == 0x1
        assert json.loads(payload)["type"] == "session.update"
        writer.write(text_frame(json.dumps({"type": "session.updated", "session": GA_SESSION})))
        await writer.drain()
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    opcode, payload = await read_client_frame(reader)
            except TimeoutError:
                break
            pings += opcode == 0x9
        started = {"type": "input_audio_buffer.speech_started", "audio_start_ms": 5, "item_id": "u"}
        writer.write(text_frame(json.dumps(started)))
        await writer.drain()
        while True:
            opcode, payload = await read_client_frame(reader)
            if opcode == 0x8:
                writer.write(server_frame(0x8, payload[:2]))
                await writer.drain()
                return

    async with RawServer(no_pong) as server:
        endpoint = Endpoint(f"ws://127.0.0.1:{server.port}/", {}, Dialect.GA, "mute")
        session = session_for(endpoint, ping_interval_s=0.05)
        await session.connect()
        events = await collect(session, lambda e: isinstance(e, SpeechStarted))
        assert events[-1] == SpeechStarted(5, "u")
        assert pings >= 4
        assert pongs_sent == 0
        assert session.state == "open"
        await session.close()
        assert server.connections == 1


# ---------------------------------------------------------------- secrets


async def test_key_never_appears_in_logs_output_or_errors(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    query = f"?model=m&api_key={KEY}"

    async def close_1011(peer: Peer) -> None:
        await peer.ws.close(1011, "internal error")

    with structlog.testing.capture_logs() as logs:
        async with ScriptedServer(
            transcript_then_active_response(close_1011), ready_then_hold
        ) as server:
            session = session_for(server.endpoint(HEADERS, query))
            await session.connect()
            await assert_reconnected(server, session)
            await session.close()
            assert server.request_headers[1]["X-Test-Key"] == KEY  # it was really sent
        async with ScriptedServer(ready_then_hold, reject_status=401) as server:
            with pytest.raises(RealtimeError) as info:
                await session_for(server.endpoint(HEADERS, query)).connect()
            messages.append(str(info.value))
        endpoint = Endpoint(f"ws://127.0.0.1:{free_port()}/{query}", HEADERS, Dialect.GA)
        with pytest.raises(RealtimeError) as info:
            await session_for(endpoint, connect_attempts=2).connect()
        messages.append(str(info.value))
        bad = Endpoint(f"http://nowhere/{query}", HEADERS, Dialect.GA)
        with pytest.raises(RealtimeError) as info:
            await session_for(bad).connect()
        messages.append(str(info.value))
    assert len(logs) > 5
    captured = capsys.readouterr()
    for text in (repr(logs), caplog.text, captured.out, captured.err, *messages):
        assert KEY not in text
    assert any("api_key=%2A%2A%2A" in m or "api_key=***" in m for m in messages)
