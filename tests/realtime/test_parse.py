"""Parsing of server frames in all three dialects into typed GA events."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from telephony_agent.realtime.events import (
    AssistantTranscriptDelta,
    AssistantTranscriptDone,
    AudioDelta,
    AudioDone,
    FunctionCall,
    InputCommitted,
    InputTranscript,
    ItemAdded,
    ItemTruncated,
    ResponseCreated,
    ResponseDone,
    ServerError,
    SessionCreated,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TimeoutTriggered,
    Unknown,
)
from telephony_agent.realtime.parse import (
    MalformedEvent,
    decode_frame,
    parse_event,
    session_rates,
)


def ev(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "event_id": "srv_1", **fields}


AUDIO = bytes(range(7))
B64 = base64.b64encode(AUDIO).decode()


@pytest.mark.parametrize(
    "kind",
    ["response.output_audio.delta", "response.audio.delta"],
)
def test_audio_delta_ga_and_beta(kind: str) -> None:
    event = parse_event(ev(kind, response_id="r1", item_id="i1", delta=B64, output_index=0))
    assert event == AudioDelta("r1", "i1", AUDIO)


@pytest.mark.parametrize("kind", ["response.output_audio.done", "response.audio.done"])
def test_audio_done_ga_and_beta(kind: str) -> None:
    assert parse_event(ev(kind, response_id="r1", item_id="i1")) == AudioDone("r1", "i1")


@pytest.mark.parametrize(
    "kind",
    [
        "response.output_audio_transcript.delta",  # OpenAI GA
        "response.audio_transcript.delta",  # beta
        "response.output_text.delta",  # Yandex in audio mode
        "response.text.delta",  # beta text
    ],
)
def test_assistant_text_deltas_all_become_transcript(kind: str) -> None:
    event = parse_event(ev(kind, response_id="r1", item_id="i1", delta="Hel"))
    assert event == AssistantTranscriptDelta("r1", "i1", "Hel")


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("response.output_audio_transcript.done", "transcript"),
        ("response.audio_transcript.done", "transcript"),
        ("response.output_text.done", "text"),
        ("response.text.done", "text"),
    ],
)
def test_assistant_text_done_reads_transcript_or_text(kind: str, field: str) -> None:
    event = parse_event(ev(kind, response_id="r1", item_id="i1", **{field: "Hello."}))
    assert event == AssistantTranscriptDone("r1", "i1", "Hello.")


@pytest.mark.parametrize("kind", ["conversation.item.added", "conversation.item.created"])
def test_item_added_and_created_are_the_same(kind: str) -> None:
    item = {"id": "i1", "type": "message", "role": "assistant", "content": [], "status": "x"}
    event = parse_event(ev(kind, item=item, previous_item_id="i0"))
    assert event == ItemAdded("i1", "assistant", "message", "i0")


def test_session_and_input_events() -> None:
    assert parse_event(ev("session.created", session={"id": "s"})) == SessionCreated(
        "s", {"id": "s"}
    )
    assert parse_event(
        ev("input_audio_buffer.speech_started", audio_start_ms=1200, item_id="u1")
    ) == SpeechStarted(1200, "u1")
    assert parse_event(
        ev("input_audio_buffer.speech_stopped", audio_end_ms=2400, item_id="u1")
    ) == SpeechStopped(2400, "u1")
    assert parse_event(
        ev("input_audio_buffer.committed", item_id="u1", previous_item_id=None)
    ) == InputCommitted("u1")
    assert parse_event(
        ev("conversation.item.input_audio_transcription.completed", item_id="u1", transcript="hi")
    ) == InputTranscript("u1", "hi", final=True)
    assert parse_event(
        ev("conversation.item.input_audio_transcription.delta", item_id="u1", delta="h")
    ) == InputTranscript("u1", "h", final=False)
    assert parse_event(
        ev("conversation.item.truncated", item_id="a1", content_index=0, audio_end_ms=640)
    ) == ItemTruncated("a1", 640)
    assert parse_event(
        ev("input_audio_buffer.timeout_triggered", audio_start_ms=1, audio_end_ms=2, item_id="u")
    ) == TimeoutTriggered(1, 2, "u")


def test_response_lifecycle() -> None:
    assert parse_event(
        ev("response.created", response={"id": "r1", "status": "in_progress"})
    ) == ResponseCreated("r1")
    done = parse_event(
        ev(
            "response.done",
            response={
                "id": "r1",
                "status": "cancelled",
                "status_details": {"type": "cancelled", "reason": "turn_detected"},
                "usage": {"total_tokens": 5},
            },
        )
    )
    assert done == ResponseDone("r1", "cancelled", "turn_detected", None, {"total_tokens": 5})
    failed = parse_event(
        ev(
            "response.done",
            response={
                "id": "r2",
                "status": "failed",
                "status_details": {"type": "failed", "error": {"type": "server_error"}},
            },
        )
    )
    assert isinstance(failed, ResponseDone)
    assert failed.status == "failed"
    assert failed.error == {"type": "server_error"}


def test_function_call_from_arguments_done_and_output_item_done() -> None:
    a = parse_event(
        ev(
            "response.function_call_arguments.done",
            response_id="r1",
            item_id="f1",
            call_id="c1",
            name="end_call",
            arguments='{"reason":"bye"}',
        )
    )
    assert a == FunctionCall("r1", "f1", "c1", "end_call", '{"reason":"bye"}')
    b = parse_event(
        ev(
            "response.output_item.done",
            response_id="r1",
            item={
                "id": "f1",
                "type": "function_call",
                "call_id": "c1",
                "name": "end_call",
                "arguments": '{"reason":"bye"}',
            },
        )
    )
    assert b == a
    msg = parse_event(ev("response.output_item.done", item={"type": "message"}))
    assert msg == Unknown("response.output_item.done")


def test_error_event_fields() -> None:
    event = parse_event(
        ev(
            "error",
            error={
                "type": "invalid_request_error",
                "code": "invalid_value",
                "message": "Invalid audio",
                "param": "audio",
                "event_id": "evt_x_3",
            },
        )
    )
    assert event == ServerError(
        "invalid_request_error", "invalid_value", "Invalid audio", "audio", "evt_x_3"
    )
    bare = parse_event(ev("error", error="something broke"))
    assert isinstance(bare, ServerError)
    assert bare.message == "something broke"
    assert bare.code is None


@pytest.mark.parametrize(
    "kind",
    [
        "foo.bar",
        "response.mcp_call.in_progress",
        "output_audio_buffer.started",
        "conversation.item.done",
        "rate_limits.updated",
        "response.content_part.added",
    ],
)
def test_unknown_events(kind: str) -> None:
    assert parse_event(ev(kind, whatever=1)) == Unknown(kind)


def test_extra_fields_and_missing_ids_are_tolerated() -> None:
    event = parse_event({"type": "response.output_audio.delta", "delta": B64, "novel": {"x": 1}})
    assert event == AudioDelta("", "", AUDIO)


def test_empty_delta_is_empty_bytes() -> None:
    event = parse_event(ev("response.output_audio.delta", response_id="r", item_id="i", delta=""))
    assert event == AudioDelta("r", "i", b"")


@pytest.mark.parametrize("delta", ["a", "not base64 ☃", 12])
def test_bad_base64_is_malformed(delta: object) -> None:
    with pytest.raises(MalformedEvent):
        parse_event(ev("response.output_audio.delta", delta=delta))


@pytest.mark.parametrize(
    "text",
    ["not json", "[1, 2]", "42", '"str"', "{}", '{"type": 5}', "{bad", ""],
)
def test_decode_frame_rejects_non_events(text: str) -> None:
    assert decode_frame(text) is None


def test_decode_frame_accepts_object_with_type() -> None:
    assert decode_frame(json.dumps({"type": "x", "a": 1})) == {"type": "x", "a": 1}


def test_session_rates_ga() -> None:
    session = {
        "type": "realtime",
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 24000}},
            "output": {"format": {"type": "audio/pcm", "rate": 48000}},
        },
    }
    assert session_rates(session) == (48000, 24000)


def test_session_rates_beta_names() -> None:
    assert session_rates({"input_audio_format": "pcm16", "output_audio_format": "pcm16"}) == (
        24000,
        24000,
    )
    assert session_rates({"output_audio_format": "g711_ulaw"}) == (8000, None)
    assert session_rates({}) == (None, None)


def test_session_rates_g711_formats_without_rate() -> None:
    session = {"audio": {"output": {"format": {"type": "audio/pcmu"}}}}
    assert session_rates(session) == (8000, None)


def test_yandex_mixed_session_updated() -> None:
    # GA audio{} next to legacy top-level turn_detection/voice/input_audio_transcription.
    session = {
        "id": "ydx",
        "instructions": "x",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "turn_detection": {"type": "server_vad", "threshold": 0.5},
            },
            "output": {"format": {"type": "audio/pcm", "rate": 44100}, "voice": "marina"},
        },
        "turn_detection": {"type": "server_vad", "threshold": 0.5},
        "voice": "marina",
        "input_audio_transcription": None,
    }
    event = parse_event(ev("session.updated", session=session))
    assert event == SessionUpdated(44100, 24000, session, "pcm", "pcm")


def test_yandex_mixed_shape_with_legacy_format_only() -> None:
    session = {"audio": {"output": {"voice": "marina"}}, "output_audio_format": "pcm16"}
    assert session_rates(session) == (24000, None)
