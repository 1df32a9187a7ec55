"""Every fault knob of the local backend produces its conformance case on the wire."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from telephony_agent.realtime.backend.behaviours import tone

from .backend_wire import (
    MANUAL,
    RATE,
    WireClient,
    b64,
    pcm_of,
    silence,
    speech_like,
    types,
    vad_session,
)
from .conftest import Start


async def _closed(c: WireClient) -> tuple[int | None, str | None]:
    """Read until the server closes; returns (code, reason)."""
    with pytest.raises(ConnectionClosed):
        while True:
            await c.next(within=3.0)
    return c.ws.close_code, c.ws.close_reason


async def test_fragment_edge_cases(start: Start, tmp_path: Path) -> None:
    script = tmp_path / "s.json"
    turn = {
        "say": "Hi there",
        "tone_ms": 1000,
        "function_calls": [{"name": "f", "arguments": {"a": 1}}],
    }
    script.write_text(json.dumps([turn]))
    backend = await start(behaviour="script", script_path=script, fragment_edge_cases=True)
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.send("response.create")
        events = await c.until("response.done", within=10)
    deltas = [base64.b64decode(e["delta"]) for e in events if e["type"].endswith("audio.delta")]
    sizes = [len(d) for d in deltas]
    assert len(deltas) >= 200
    assert 0 in sizes
    assert 1 in sizes
    # Somewhere a delta ends in the middle of a PCM16 sample.
    assert any(sum(sizes[: i + 1]) % 2 for i in range(len(sizes)))
    expected = tone(440.0, 1000, RATE).astype("<i2").tobytes()
    assert b"".join(deltas) == expected
    text = [e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"]
    assert text == list("Hi there")
    args = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert all(len(a) == 1 for a in args)
    assert json.loads("".join(args)) == {"a": 1}


async def test_session_updated_never_or_twice(start: Start) -> None:
    for count in (0, 2):
        backend = await start(session_updated_count=count)
        async with WireClient.open(backend.url) as c:
            await c.next()
            await c.send("session.update", session=MANUAL)
            await c.send("response.create")
            events = await c.until("response.done")
            assert types(events).count("session.updated") == count


async def test_yandex_echo_is_the_mixed_shape(start: Start) -> None:
    backend = await start(dialect="yandex", session_updated_count=2)
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.send("session.update", session={"audio": {"output": {"voice": "marina"}}})
        first, second = (await c.until("session.updated")), await c.next()
        session = first[-1]["session"]
        assert second["type"] == "session.updated"
        assert session["voice"] == "marina"
        assert session["audio"]["output"]["voice"] == "marina"
        assert session["turn_detection"] == session["audio"]["input"]["turn_detection"]
        assert "input_audio_transcription" in session


async def test_first_delta_delay(start: Start) -> None:
    backend = await start(first_delta_delay_s=0.4)
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.send("response.create")
        await c.until("response.created")
        began = time.monotonic()
        await c.until("response.output_audio.delta")
        assert time.monotonic() - began >= 0.35


async def test_close_mid_response_without_error(start: Start) -> None:
    backend = await start(behaviour="tone", close_mid_response_code=1011, close_after_deltas=3)
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.send("response.create")
        code, _ = await _closed(c)
    assert code == 1011
    assert types(c.seen).count("response.output_audio.delta") == 3
    assert "error" not in types(c.seen)
    assert "response.done" not in types(c.seen)
    # The fault fires once per backend: the reconnected client is served in full.
    async with WireClient.open(backend.url) as again:
        await again.next()
        await again.send("response.create")
        assert (await again.until("response.done"))[-1]["response"]["status"] == "completed"


@pytest.mark.parametrize("stage", ["speech_started", "committed"])
async def test_close_mid_question_once_per_backend(start: Start, stage: str) -> None:
    backend = await start(
        close_mid_question_code=1011, close_mid_question_at=stage, keep_input_audio=True
    )
    question = np.concatenate([speech_like(600, seed=3), silence(500)])
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.configure(vad_session())
        await c.append(question)
        code, _ = await _closed(c)
    assert code == 1011
    names = types(c.seen)
    assert "input_audio_buffer.speech_started" in names
    assert ("input_audio_buffer.committed" in names) == (stage == "committed")
    assert "response.created" not in names and "error" not in names
    # The fault fires once per backend: the same question on a new connection is answered.
    async with WireClient.open(backend.url) as again:
        await again.next()
        await again.configure(vad_session())
        await again.append(question)
        assert (await again.until("response.done"))[-1]["response"]["status"] == "completed"
    # Each connection's received audio is kept apart, exactly as sent.
    assert len(backend.stats.input_audio) == 2
    assert bytes(backend.stats.input_audio[1]) == question.astype("<i2").tobytes()


async def test_messages_and_response_instructions_are_tapped(start: Start) -> None:
    backend = await start()
    async with WireClient.open(backend.url) as c:
        await c.next()
        item = {
            "type": "message",
            "role": "system",
            "content": [{"type": "input_text", "text": "Hi"}],
        }
        await c.send("conversation.item.create", item=item)
        await c.send("response.create", response={"instructions": "Greet the caller"})
        await c.until("response.done")
        await c.send("response.create")
        await c.until("response.done")
    assert list(backend.stats.messages) == ["system: Hi"]
    assert list(backend.stats.response_instructions) == ["Greet the caller", None]
    assert "messages" not in backend.stats.snapshot()


async def test_session_expiry_error_then_close_1001(start: Start) -> None:
    backend = await start(session_expire_after_s=0.2)
    async with WireClient.open(backend.url) as c:
        await c.next()
        code, _ = await _closed(c)
    error = c.seen[-1]["error"]
    assert error["code"] == "session_expired"
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("Your session hit the maximum duration of ")
    assert code == 1001


async def test_close_on_connect(start: Start) -> None:
    backend = await start(close_on_connect=(1008, "Invalid model URI"))
    async with WireClient.open(backend.url) as c:
        code, reason = await _closed(c)
    assert (code, reason) == (1008, "Invalid model URI")
    assert c.seen == []


async def test_reject_beta_shape(start: Start) -> None:
    backend = await start(reject_beta_shape=True)
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.configure(MANUAL)  # the GA shape is fine
        await c.send("session.update", session={"modalities": ["audio", "text"]}, event_id="e1")
        code, _ = await _closed(c)
    error = c.seen[-1]["error"]
    assert (error["code"], error["event_id"]) == ("beta_api_shape_disabled", "e1")
    assert code == 4000


async def test_injected_non_fatal_errors(start: Start) -> None:
    backend = await start(inject_errors=True)
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.configure(MANUAL)
        await c.send("response.create")
        assert (await c.until("response.done"))[-1]["response"]["status"] == "completed"
        error = (await c.until("error"))[-1]["error"]
        assert (error["code"], error["event_id"]) == ("input_audio_buffer_commit_empty", None)
        await c.send("input_audio_buffer.append", audio=b64(silence(20)), event_id="evt_a")
        error = (await c.until("error"))[-1]["error"]
        assert (error["code"], error["param"], error["event_id"]) == (
            "invalid_value",
            "audio",
            "evt_a",
        )
        await c.send("response.create")
        failed = (await c.until("response.done"))[-1]["response"]
        assert failed["status"] == "failed"
        assert failed["status_details"]["error"]["type"] == "server_error"
        await c.send("response.create")
        assert (await c.until("response.done"))[-1]["response"]["status"] == "completed"
    assert backend.stats.injected_errors == 2
    assert backend.stats.responses_failed == 1


async def test_junk_frames_after_session_created(start: Start) -> None:
    backend = await start(junk_frames=True)
    async with WireClient.open(backend.url) as c:
        assert (await c.next())["type"] == "session.created"
        await c.send("response.create")
        await c.until("response.done")
    assert len(c.raw) == 2
    assert isinstance(c.raw[0], str)
    assert isinstance(c.raw[1], bytes)


async def test_unknown_events_and_extra_fields(start: Start) -> None:
    backend = await start(unknown_events=True, dialect="beta")
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.send("response.create")
        events = await c.until("response.done")
    names = types(c.seen)
    assert "foo.bar" in names
    assert "response.mcp_call.in_progress" in names
    assert "output_audio_buffer.started" in names
    assert "conversation.item.done" in names  # beta never sends it normally
    assert all("x_unannounced" in e for e in events)


@pytest.mark.parametrize("timing", ["after", "never"])
async def test_transcript_timing(start: Start, timing: str) -> None:
    backend = await start(transcript_timing=timing)
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.configure(vad_session())
        await c.append(np.concatenate([speech_like(400), silence(500)]))
        await c.until("response.done")
        await c.send("conversation.item.retrieve", item_id="item_none")
        await c.until("error")
    names = types(c.seen)
    kind = "conversation.item.input_audio_transcription.completed"
    if timing == "after":
        assert names.index(kind) == names.index("response.done") + 1
    else:
        assert kind not in names


async def test_idle_timeout_triggers_a_response(start: Start) -> None:
    backend = await start()
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.configure(vad_session(idle_timeout_ms=400))
        await c.append(silence(600))
        events = await c.until("response.done")
    names = types(events)
    assert names.index("input_audio_buffer.timeout_triggered") < names.index("response.created")
    triggered = events[names.index("input_audio_buffer.timeout_triggered")]
    assert triggered["audio_end_ms"] - triggered["audio_start_ms"] >= 400
    committed = events[names.index("input_audio_buffer.committed")]
    assert committed["item_id"] == triggered["item_id"]
    assert len(pcm_of(events)) > 0
    assert backend.stats.idle_timeouts == 1


async def test_tone_behaviour_and_pacing(start: Start) -> None:
    backend = await start(behaviour="tone", realtime_factor=10.0)
    async with WireClient.open(backend.url) as c:
        await c.next()
        began = time.monotonic()
        await c.send("response.create")
        events = await c.until("response.done")
        elapsed = time.monotonic() - began
    audio = np.frombuffer(pcm_of(events), dtype="<i2")
    assert len(audio) == RATE
    spectrum = np.abs(np.fft.rfft(audio.astype(float)))
    assert abs(float(np.argmax(spectrum)) * RATE / len(audio) - 440.0) < 2.0
    # 1 s of audio at 10x real time: about 0.1 s on the wire, never a single burst.
    assert 0.08 <= elapsed < 1.0


async def test_many_concurrent_calls(start: Start) -> None:
    backend = await start()

    async def call(seed: int) -> int:
        async with WireClient.open(backend.url) as c:
            await c.next()
            await c.configure(vad_session())
            await c.append(np.concatenate([speech_like(300, seed), silence(400)]), chunk_ms=100)
            events = await c.until("response.done")
            return len(pcm_of(events))

    sizes = await asyncio.gather(*(call(i) for i in range(20)))
    assert all(size > 0 for size in sizes)
    assert backend.stats.responses_completed == 20
    await backend.close()  # waits for every connection handler to finish
    assert backend.stats.open_connections == 0
