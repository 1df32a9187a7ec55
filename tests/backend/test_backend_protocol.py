"""The local backend over a real websocket: handshake, turns, responses, strictness."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

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


async def test_handshake_created_first_then_updated_with_effective_config(start: Start) -> None:
    backend = await start()
    async with WireClient.open(backend.url + "?model=gpt-realtime-mini") as c:
        created = await c.next()
        assert created["type"] == "session.created"
        assert created["session"]["type"] == "realtime"
        assert created["session"]["model"] == "gpt-realtime-mini"
        assert created["session"]["audio"]["output"]["format"] == {
            "type": "audio/pcm",
            "rate": 24000,
        }
        session = {
            "type": "realtime",
            "instructions": "be brief",
            "audio": {"output": {"format": {"type": "audio/pcm", "rate": 16000}, "voice": "cedar"}},
        }
        updated = await c.configure(session)
        assert updated["session"]["instructions"] == "be brief"
        assert updated["session"]["audio"]["output"] == {
            "format": {"type": "audio/pcm", "rate": 16000},
            "voice": "cedar",
            "speed": 1.0,
        }
        # A patch: the next update keeps what the previous one set.
        again = await c.configure({"type": "realtime", "output_modalities": ["text"]})
        assert again["session"]["instructions"] == "be brief"
        assert again["session"]["output_modalities"] == ["text"]
        assert all(e["event_id"].startswith("event_") for e in c.seen)
        assert len({e["event_id"] for e in c.seen}) == len(c.seen)
    assert backend.stats.connections == 1
    assert backend.stats.session_updates == 2


async def test_any_path_is_accepted(start: Start) -> None:
    backend = await start()
    url = f"ws://127.0.0.1:{backend.port}/v1/realtime/openai?model=gpt://folder/speech"
    async with WireClient.open(url) as c:
        assert (await c.next())["session"]["model"] == "gpt://folder/speech"


async def test_beta_shaped_update_is_parsed(start: Start) -> None:
    backend = await start()
    async with WireClient.open(backend.url) as c:
        await c.next()
        session = {
            "modalities": ["text", "audio"],
            "input_audio_format": "pcm16",
            "output_audio_format": "pcm16",
            "voice": "alloy",
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 400},
        }
        updated = (await c.configure(session))["session"]
        assert updated["audio"]["output"]["voice"] == "alloy"
        assert updated["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 400
        assert updated["output_modalities"] == ["audio"]


async def test_invalid_session_update_is_an_error_and_keeps_config(start: Start) -> None:
    backend = await start()
    async with WireClient.open(backend.url) as c:
        await c.next()
        bad = {
            "type": "realtime",
            "audio": {"output": {"format": {"type": "audio/pcm", "rate": 7}}},
        }
        await c.send("session.update", session=bad, event_id="evt_bad")
        error = (await c.until("error"))[-1]["error"]
        assert error["param"] == "session.audio.output.format.rate"
        assert error["event_id"] == "evt_bad"
        assert (await c.configure({}))["session"]["audio"]["output"]["format"]["rate"] == 24000


async def test_vad_turn_commits_and_echoes_the_callers_speech(start: Start) -> None:
    backend = await start()
    lead, speech = silence(400), speech_like(1200, seed=1)
    audio = np.concatenate([lead, speech, silence(600)])
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.configure(vad_session(silence_ms=300))
        await c.append(audio)
        events = await c.until("response.done")
    names = types(events)
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
    ]
    positions = [names.index(n) for n in order]
    assert positions == sorted(positions)
    started = events[names.index("input_audio_buffer.speech_started")]
    stopped = events[names.index("input_audio_buffer.speech_stopped")]
    committed = events[names.index("input_audio_buffer.committed")]
    # Speech begins at 400 ms; prefix padding (100 ms) is included in audio_start_ms.
    assert 280 <= started["audio_start_ms"] <= 320
    # Speech ends at 1600 ms, plus the 300 ms of silence it takes to notice.
    assert 1880 <= stopped["audio_end_ms"] <= 1940
    assert started["item_id"] == stopped["item_id"] == committed["item_id"]
    done = events[-1]["response"]
    assert done["status"] == "completed"
    assert done["usage"]["output_tokens"] > 0
    assert [o["type"] for o in done["output"]] == ["message"]
    echoed = np.frombuffer(pcm_of(events), dtype="<i2")
    start_sample = started["audio_start_ms"] * RATE // 1000
    expected = audio[start_sample : start_sample + len(echoed)]
    assert len(echoed) == (stopped["audio_end_ms"] - started["audio_start_ms"]) * RATE // 1000
    assert np.corrcoef(echoed.astype(float), expected.astype(float))[0, 1] > 0.999
    transcript = next(e for e in events if e["type"].endswith("transcription.completed"))
    assert transcript["transcript"].startswith("[caller speech 1.")
    assert backend.stats.speech_started == backend.stats.commits == 1
    assert backend.stats.responses_completed == 1


@pytest.mark.parametrize(("requested", "forced"), [(16000, None), (24000, 44100)])
async def test_echo_is_resampled_to_the_output_rate(
    start: Start, requested: int, forced: int | None
) -> None:
    backend = await start(output_rate=forced)
    rate = forced or requested
    speech = speech_like(600, seed=2)
    async with WireClient.open(backend.url) as c:
        await c.next()
        session = {
            "type": "realtime",
            "audio": {
                "input": {"turn_detection": None},
                "output": {"format": {"type": "audio/pcm", "rate": requested}},
            },
        }
        updated = await c.configure(session)
        assert updated["session"]["audio"]["output"]["format"]["rate"] == rate
        await c.append(speech)
        await c.send("input_audio_buffer.commit")
        await c.send("response.create")
        events = await c.until("response.done")
    echoed = np.frombuffer(pcm_of(events), dtype="<i2")
    assert abs(len(echoed) - len(speech) * rate // RATE) <= 2
    back = soxr.resample(echoed, rate, RATE)[: len(speech)]
    assert np.corrcoef(back.astype(float), speech[: len(back)].astype(float))[0, 1] > 0.95


async def test_manual_commit_and_response_create(start: Start) -> None:
    backend = await start()
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.configure(MANUAL)
        await c.append(speech_like(60))
        await c.send("input_audio_buffer.commit", event_id="evt_commit")
        error = (await c.until("error"))[-1]["error"]
        assert error["code"] == "input_audio_buffer_commit_empty"
        assert error["message"].startswith("Error committing input audio buffer")
        assert "Expected at least 100ms" in error["message"]
        assert error["event_id"] == "evt_commit"
        await c.append(speech_like(500))
        await c.send("input_audio_buffer.commit")
        committed = (await c.until("input_audio_buffer.committed"))[-1]
        assert "input_audio_buffer.speech_started" not in types(c.seen)
        await c.send("response.create")
        events = await c.until("response.done")
        assert events[-1]["response"]["status"] == "completed"
        # The 60 ms that were too short stayed in the buffer and were committed too.
        assert len(pcm_of(events)) == 2 * RATE * 560 // 1000
        added = [e for e in events if e["type"] == "conversation.item.added"]
        assert [e["item"]["role"] for e in added] == ["user", "assistant"]
        assert added[1]["previous_item_id"] == committed["item_id"]
        await c.append(speech_like(200))
        await c.send("input_audio_buffer.clear")
        await c.until("input_audio_buffer.cleared")
        await c.send("input_audio_buffer.commit")
        assert (await c.until("error"))[-1]["error"]["code"] == "input_audio_buffer_commit_empty"


async def test_append_errors_echo_the_client_event_id(start: Start) -> None:
    backend = await start()
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.send("input_audio_buffer.append", audio="", event_id="evt_empty")
        error = (await c.until("error"))[-1]["error"]
        assert (error["code"], error["param"], error["event_id"]) == (
            "invalid_value",
            "audio",
            "evt_empty",
        )
        assert error["message"].endswith("but got empty bytes.")
        assert error["type"] == "invalid_request_error"
        await c.send("input_audio_buffer.append", audio="%%%not base64", event_id="evt_bad")
        error = (await c.until("error"))[-1]["error"]
        assert (error["param"], error["event_id"]) == ("audio", "evt_bad")


async def test_unexpected_client_events_are_non_fatal(start: Start) -> None:
    backend = await start()
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.send("output_audio_buffer.clear", event_id="evt_1")
        error = (await c.until("error"))[-1]
        assert set(error) == {"type", "event_id", "error"}
        assert set(error["error"]) == {"type", "code", "message", "param", "event_id"}
        assert error["error"]["type"] == "invalid_request_error"
        assert error["error"]["event_id"] == "evt_1"
        await c.ws.send("{not json")
        assert (await c.until("error"))[-1]["error"]["code"] == "invalid_json"
        await c.ws.send(b"\x00\x01")
        await c.until("error")
        await c.send("response.create")
        assert (await c.until("response.done"))[-1]["response"]["status"] == "completed"
    assert backend.stats.client_errors == 3


async def _responding(c: WireClient) -> list[dict[str, Any]]:
    """Start a response and return the events up to its first audio delta."""
    await c.send("response.create")
    return await c.until("response.output_audio.delta")


async def test_cancel_active_and_not_active(start: Start) -> None:
    backend = await start(behaviour="tone", realtime_factor=1.0)
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.configure(MANUAL)
        events = await _responding(c)
        response_id = events[-1]["response_id"]
        await c.send("response.cancel", event_id="evt_cancel")
        done = (await c.until("response.done"))[-1]["response"]
        assert done["id"] == response_id
        assert done["status"] == "cancelled"
        assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
        assert done["output"][0]["status"] == "incomplete"
        await c.send("response.cancel", event_id="evt_again")
        error = (await c.until("error"))[-1]["error"]
        assert error["code"] == "response_cancel_not_active"
        assert error["event_id"] == "evt_again"
        # No stale deltas after the cancelled response.done.
        await c.send("response.create")
        later = await c.until("response.created")
        assert all(e.get("response_id") != response_id for e in later)
    assert backend.stats.cancels_client == 1
    assert backend.stats.cancels_not_active == 1
    assert backend.stats.stale_client_errors == 1


async def test_response_create_while_active_is_rejected(start: Start) -> None:
    backend = await start(behaviour="tone", realtime_factor=1.0)
    async with WireClient.open(backend.url) as c:
        await c.next()
        events = await _responding(c)
        await c.send("response.create", event_id="evt_early")
        error = (await c.until("error"))[-1]["error"]
        assert error["code"] == "conversation_already_has_active_response"
        assert events[-1]["response_id"] in error["message"]
        assert error["event_id"] == "evt_early"
        await c.send("response.cancel")
        await c.until("response.done")
    assert backend.stats.response_creates == 2
    assert backend.stats.early_response_creates == 1
    assert backend.stats.responses == 1


async def test_barge_in_auto_cancels_with_turn_detected(start: Start) -> None:
    backend = await start(behaviour="tone", realtime_factor=1.0)
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.configure(vad_session())
        events = await _responding(c)
        response_id = events[-1]["response_id"]
        await c.append(speech_like(300, seed=3))
        after = await c.until("response.done")
    names = types(after)
    assert names.index("input_audio_buffer.speech_started") < names.index("response.done")
    done = after[-1]["response"]
    assert done["id"] == response_id
    assert done["status_details"]["reason"] == "turn_detected"
    assert backend.stats.cancels_turn_detected == 1
    assert backend.stats.barge_ins == 1


async def test_barge_in_without_auto_cancel_keeps_streaming(start: Start) -> None:
    backend = await start(behaviour="tone", realtime_factor=1.0, auto_cancel_on_speech=False)
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.configure(vad_session())
        events = await _responding(c)
        response_id = events[-1]["response_id"]
        await c.append(speech_like(300, seed=3))
        after = await c.until("input_audio_buffer.speech_started")
        more = await c.until("response.output_audio.delta")
        assert more[-1]["response_id"] == response_id
        await c.send("response.cancel")
        done = (await c.until("response.done"))[-1]["response"]
        assert done["status_details"]["reason"] == "client_cancelled"
        assert after


async def test_strict_truncate(start: Start) -> None:
    backend = await start(behaviour="tone")
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.configure(MANUAL)
        await c.append(speech_like(300))
        await c.send("input_audio_buffer.commit")
        user_item = (await c.until("input_audio_buffer.committed"))[-1]["item_id"]
        await c.send("response.create")
        events = await c.until("response.done")
        item_id = next(e for e in events if e["type"] == "response.output_item.added")["item"]["id"]
        sent_ms = len(pcm_of(events)) * 1000 // (2 * RATE)
        assert sent_ms == 1000

        async def rejected(**fields: Any) -> dict[str, Any]:
            await c.send("conversation.item.truncate", event_id="evt_t", **fields)
            error: dict[str, Any] = (await c.until("error"))[-1]["error"]
            assert error["event_id"] == "evt_t"
            return error

        error = await rejected(item_id="item_nope", content_index=0, audio_end_ms=10)
        assert error["code"] == "item_truncate_invalid_item_id"
        error = await rejected(item_id=user_item, content_index=0, audio_end_ms=10)
        assert error["code"] == "unsupported_content_type"
        assert error["message"] == "Only model output audio messages can be truncated"
        error = await rejected(item_id=item_id, content_index=0, audio_end_ms=-1)
        assert error["code"] == "integer_below_min_value"
        error = await rejected(item_id=item_id, content_index=0, audio_end_ms=1001)
        assert error["message"] == "Audio content of 1000ms is already shorter than 1001ms"
        assert backend.stats.rejected_truncates == 4
        await c.send(
            "conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=400
        )
        truncated = (await c.until("conversation.item.truncated"))[-1]
        assert (truncated["item_id"], truncated["audio_end_ms"]) == (item_id, 400)
        # Once truncated, the item is only 400 ms long.
        error = await rejected(item_id=item_id, content_index=0, audio_end_ms=500)
        assert error["message"] == "Audio content of 400ms is already shorter than 500ms"
        await c.send("conversation.item.delete", item_id=item_id)
        assert (await c.until("conversation.item.deleted"))[-1]["item_id"] == item_id
        error = await rejected(item_id=item_id, content_index=0, audio_end_ms=0)
        assert error["code"] == "item_truncate_invalid_item_id"
    assert backend.stats.truncates_accepted == 1
    assert backend.stats.rejected_truncates == 6
    assert backend.stats.truncations[-1].audio_end_ms == 400


async def test_truncate_is_checked_against_audio_sent_so_far(start: Start) -> None:
    backend = await start(behaviour="tone", realtime_factor=1.0, delta_ms=100)
    async with WireClient.open(backend.url) as c:
        await c.next()
        events = await _responding(c)
        item_id = events[-1]["item_id"]
        await c.send(
            "conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=900
        )
        error = (await c.until("error"))[-1]["error"]
        assert error["message"].endswith("is already shorter than 900ms")
        await c.send("response.cancel")
        await c.until("response.done")
        await c.send(
            "conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=100
        )
        await c.until("conversation.item.truncated")
    assert backend.stats.rejected_truncates == 1


async def test_text_only_response_cannot_be_truncated(start: Start) -> None:
    backend = await start(behaviour="tone")
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.send("response.create", response={"output_modalities": ["text"]})
        events = await c.until("response.done")
        assert "response.output_audio.delta" not in types(events)
        text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        assert text.startswith("Tone of 440 Hz")
        item_id = events[-1]["response"]["output"][0]["id"]
        await c.send("conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=0)
        assert (await c.until("error"))[-1]["error"]["code"] == "unsupported_content_type"


def _script(tmp_path: Path, turns: list[dict[str, Any]]) -> Path:
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"turns": turns}))
    return path


async def test_script_two_function_calls_and_follow_up(start: Start, tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        [
            {
                "say": "Let me check.",
                "tone_ms": 200,
                "function_calls": [
                    {"name": "lookup_flight", "arguments": {"from": "LHR", "to": "JFK"}},
                    {"name": "get_weather", "arguments": {"city": "New York"}},
                ],
            },
            {"say": "Your flight is on time.", "tone_ms": 300},
        ],
    )
    backend = await start(behaviour="script", script_path=script)
    async with WireClient.open(backend.url) as c:
        await c.next()
        await c.send("response.create")
        events = await c.until("response.done")
        calls = [e for e in events if e["type"] == "response.function_call_arguments.done"]
        assert [call["name"] for call in calls] == ["lookup_flight", "get_weather"]
        assert json.loads(calls[0]["arguments"]) == {"from": "LHR", "to": "JFK"}
        for call in calls:
            deltas = [
                e["delta"]
                for e in events
                if e["type"] == "response.function_call_arguments.delta"
                and e["call_id"] == call["call_id"]
            ]
            assert len(deltas) > 1
            assert "".join(deltas) == call["arguments"]
        added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
        assert [i["type"] for i in added] == ["message", "function_call", "function_call"]
        assert [i["call_id"] for i in added[1:]] == [call["call_id"] for call in calls]
        output = events[-1]["response"]["output"]
        assert [o.get("call_id") for o in output[1:]] == [call["call_id"] for call in calls]
        transcript = next(e for e in events if e["type"] == "response.output_audio_transcript.done")
        assert transcript["transcript"] == "Let me check."

        item = {"type": "function_call_output", "call_id": "call_unknown", "output": "{}"}
        await c.send("conversation.item.create", item=item, event_id="evt_x")
        assert (await c.until("error"))[-1]["error"]["param"] == "item.call_id"
        for call in calls:
            item = {"type": "function_call_output", "call_id": call["call_id"], "output": "{}"}
            await c.send("conversation.item.create", item=item)
            added_output = (await c.until("conversation.item.added"))[-1]["item"]
            assert added_output["call_id"] == call["call_id"]
        await c.send("response.create")
        follow = await c.until("response.done")
        transcript = next(e for e in follow if e["type"] == "response.output_audio_transcript.done")
        assert transcript["transcript"] == "Your flight is on time."
        assert len(pcm_of(follow)) == 2 * RATE * 300 // 1000
    assert backend.stats.function_calls == 2
    assert backend.stats.function_outputs == 2
    assert backend.stats.response_creates == 2


async def test_client_message_items_are_accepted(start: Start) -> None:
    backend = await start()
    async with WireClient.open(backend.url) as c:
        await c.next()
        for role, part in (("system", "input_text"), ("user", "input_text"), ("assistant", "text")):
            item = {"type": "message", "role": role, "content": [{"type": part, "text": "recap"}]}
            await c.send("conversation.item.create", item=item)
            added = (await c.until("conversation.item.added"))[-1]
            assert added["item"]["role"] == role
        audio_item = {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "input_audio", "audio": b64(silence(100))}],
        }
        await c.send("conversation.item.create", item=audio_item)
        assert (await c.until("error"))[-1]["error"]["code"] == "invalid_value"
        await c.send("conversation.item.retrieve", item_id=added["item"]["id"])
        assert (await c.until("conversation.item.retrieved"))[-1]["item"]["role"] == "assistant"
    assert backend.stats.items_created == 3


@pytest.mark.parametrize(
    ("dialect", "present", "absent"),
    [
        (
            "ga",
            {
                "response.output_audio.delta",
                "response.output_audio_transcript.delta",
                "conversation.item.added",
                "conversation.item.done",
                "rate_limits.updated",
            },
            {"conversation.item.created", "response.output_text.delta", "response.audio.delta"},
        ),
        (
            "beta",
            {
                "response.audio.delta",
                "response.audio.done",
                "response.audio_transcript.delta",
                "response.audio_transcript.done",
                "conversation.item.created",
                "rate_limits.updated",
            },
            {"response.output_audio.delta", "conversation.item.added", "conversation.item.done"},
        ),
        (
            "yandex",
            {
                "response.output_audio.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "conversation.item.created",
            },
            {
                "rate_limits.updated",
                "response.output_audio_transcript.delta",
                "conversation.item.added",
            },
        ),
    ],
)
async def test_dialect_event_names(
    start: Start, dialect: str, present: set[str], absent: set[str]
) -> None:
    backend = await start(dialect=dialect)
    async with WireClient.open(backend.url) as c:
        created = await c.next()
        await c.configure(vad_session())
        await c.append(np.concatenate([speech_like(400), silence(500)]))
        events = await c.until("response.done")
    names = set(types(events))
    assert present <= names
    assert not absent & names
    if dialect == "beta":
        assert "modalities" in created["session"]
        message = events[-1]["response"]["output"][0]
        assert message["content"][0]["type"] == "audio"
    if dialect == "yandex":
        text_done = next(e for e in events if e["type"] == "response.output_text.done")
        assert text_done["text"].startswith("Echo of")
        assert "audio" in created["session"]
        assert "turn_detection" in created["session"]
        assert "type" not in created["session"]


@pytest.mark.parametrize("header", ["Bearer sk-test", "Api-Key sk-test", "api-key sk-test"])
async def test_api_key_schemes_accepted(start: Start, header: str) -> None:
    backend = await start(require_api_key="sk-test")
    async with WireClient.open(backend.url, {"Authorization": header}) as c:
        assert (await c.next())["type"] == "session.created"


@pytest.mark.parametrize("headers", [None, {"Authorization": "Bearer wrong"}])
async def test_bad_api_key_gets_http_401(start: Start, headers: dict[str, str] | None) -> None:
    backend = await start(require_api_key="sk-test")
    with pytest.raises(InvalidStatus) as info:
        async with connect(backend.url, additional_headers=headers):
            pass
    assert info.value.response.status_code == 401
    assert b"sk-test" not in info.value.response.body
    assert backend.stats.rejected_handshakes == 1
    assert backend.stats.connections == 0


@pytest.mark.parametrize("ignore", [False, True])
async def test_ignore_pings(start: Start, ignore: bool) -> None:
    backend = await start(ignore_pings=ignore)
    async with WireClient.open(backend.url) as c:
        await c.next()
        pong = await c.ws.ping()
        if ignore:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pong), 0.3)
            # The connection itself keeps working.
            await c.send("response.create")
            assert (await c.until("response.done"))[-1]["response"]["status"] == "completed"
        else:
            await asyncio.wait_for(pong, 1.0)
    assert backend.stats.pings_ignored == (1 if ignore else 0)
