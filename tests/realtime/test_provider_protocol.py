"""Provider fidelity in the sans-I/O protocol: G.711 accounting and fallback, fatal model
errors, and one source of words per assistant item."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from telephony_agent.realtime.dialect import Dialect
from telephony_agent.realtime.error_rules import error_kind
from telephony_agent.realtime.events import (
    AssistantTranscriptDelta,
    AssistantTranscriptDone,
    ServerError,
    ServerEvent,
    SessionUpdated,
)
from telephony_agent.realtime.protocol import RealtimeProtocol
from telephony_agent.realtime.session_config import AudioFormat, SessionConfig


def make(audio_format: AudioFormat = "pcmu", dialect: Dialect = Dialect.GA) -> RealtimeProtocol:
    config = SessionConfig(instructions="x", output_rate=16000, audio_format=audio_format)
    return RealtimeProtocol(config, dialect)


def feed(p: RealtimeProtocol, kind: str, **fields: Any) -> list[ServerEvent]:
    return p.feed(json.dumps({"type": kind, **fields}))


def g711_session(law: str = "pcmu") -> dict[str, Any]:
    fmt = {"type": f"audio/{law}"}
    return {"audio": {"input": {"format": fmt}, "output": {"format": fmt}}}


def pcm_session(rate: int) -> dict[str, Any]:
    return {
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 24000}},
            "output": {"format": {"type": "audio/pcm", "rate": rate}},
        }
    }


def sent(frame: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(frame)
    return obj


def handshake_update(p: RealtimeProtocol) -> dict[str, Any]:
    """session.created, then the session.update we send (returned decoded)."""
    feed(p, "session.created", session={})
    return sent(p.session_update())


# ---------------------------------------------------------------- G.711 accounting


def test_g711_appends_are_20_ms_of_bytes_and_any_length_is_whole_samples() -> None:
    p = make()
    update = handshake_update(p)
    assert update["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert (p.input_rate, p.output_rate, p.chunk_bytes) == (8000, 8000, 160)
    frames = p.append_audio(bytes(range(1, 250)))  # 249 bytes: one chunk, 89 pending
    chunks = [base64.b64decode(sent(f)["audio"]) for f in frames]
    assert chunks == [bytes(range(1, 161))]
    # An odd number of bytes is whole G.711 samples: the commit flushes all of them.
    tail = [base64.b64decode(sent(f)["audio"]) for f in p.commit()[:-1]]
    assert tail == [bytes(range(161, 250))]


def test_g711_received_ms_and_truncation_are_8_bytes_per_ms() -> None:
    p = make()
    feed(p, "session.created", session={})
    feed(p, "session.updated", session=g711_session())
    feed(p, "response.created", response={"id": "r1"})
    audio = base64.b64encode(bytes(1203)).decode()  # 150.375 ms
    feed(p, "response.output_audio.delta", response_id="r1", item_id="a1", delta=audio)
    assert p.received_ms("a1") == 150
    frame = p.truncate("a1", 400)
    assert frame is not None and sent(frame)["audio_end_ms"] == 150
    frame = p.truncate("a1", 60)
    assert frame is not None and sent(frame)["audio_end_ms"] == 60


# ---------------------------------------------------------------- G.711 refused


def test_an_error_answering_the_g711_update_falls_back_to_pcm() -> None:
    p = make()
    update = handshake_update(p)
    error = {
        "type": "invalid_request_error",
        "code": "invalid_value",
        "message": "Invalid value: 'audio/pcmu'.",
        "param": "session.audio.input.format.type",
        "event_id": update["event_id"],
    }
    assert feed(p, "error", error=error) == []  # handled here, not the Call's business
    assert p.fatal is None and not p.ready
    retry = sent(p.take_outgoing()[0])
    assert retry["type"] == "session.update"
    assert retry["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert retry["session"]["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 16000}
    assert (p.audio_format, p.chunk_bytes, p.input_rate) == ("pcm", 960, 24000)
    assert p.stats["g711_fallbacks"] == 1
    events = feed(p, "session.updated", session=pcm_session(16000))
    assert isinstance(events[0], SessionUpdated) and p.ready and p.output_rate == 16000


def test_an_echo_that_ignores_g711_falls_back_before_ready() -> None:
    # A provider that answers a format it lacks with no error (its echo says PCM).
    p = make(dialect=Dialect.YANDEX)
    handshake_update(p)
    assert feed(p, "session.updated", session=pcm_session(24000)) == []
    assert not p.ready and p.audio_format == "pcm"
    assert sent(p.take_outgoing()[0])["type"] == "session.update"
    # Yandex echoes twice: both copies agree with PCM now, and ready happens once.
    feed(p, "session.updated", session=pcm_session(24000))
    feed(p, "session.updated", session=pcm_session(16000))
    assert p.ready and p.ready_transitions == 1 and p.output_rate == 16000
    assert p.stats["g711_fallbacks"] == 1


def test_an_accepted_g711_echo_keeps_g711() -> None:
    p = make("pcma")
    handshake_update(p)
    events = feed(p, "session.updated", session=g711_session("pcma"))
    assert events and isinstance(events[0], SessionUpdated)
    assert events[0].output_format == events[0].input_format == "pcma"
    assert p.ready and p.audio_format == "pcma" and p.output_rate == 8000
    assert p.take_outgoing() == []


def test_a_pcm_session_rejected_is_still_a_config_error() -> None:
    p = make("pcm")
    update = handshake_update(p)
    error = {"type": "invalid_request_error", "message": "bad", "event_id": update["event_id"]}
    assert isinstance(feed(p, "error", error=error)[0], ServerError)
    assert p.fatal is not None and p.fatal.kind == "config"


# ---------------------------------------------------------------- fatal errors


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (
            {
                "type": "server_error",
                "code": None,
                "message": "Runtime error: NOT_FOUND: Instance with model gpt://b1g/x not found",
            },
            "model",
        ),
        ({"type": "server_error", "message": "Invalid model URI 'speech-x/latest'"}, "model"),
        ({"type": "invalid_request_error", "code": "model_not_found", "message": "no"}, "model"),
        ({"type": "server_error", "message": "Runtime error: UNAUTHENTICATED: bad key"}, "auth"),
        ({"type": "server_error", "message": "PERMISSION_DENIED: no role"}, "auth"),
        ({"type": "invalid_request_error", "code": "Invalid_API_Key", "message": "x"}, "auth"),
        ({"type": "server_error", "code": "server_error", "message": "try again"}, "other"),
        ({"type": "invalid_request_error", "code": "item_not_found", "message": "x"}, "other"),
    ],
)
def test_error_kinds(error: dict[str, Any], kind: str) -> None:
    parsed = ServerError(
        type=error["type"],
        code=error.get("code"),
        message=error["message"],
        param=None,
        event_id=None,
    )
    assert error_kind(parsed) == kind


def test_a_missing_model_ends_the_session_even_with_g711_pending() -> None:
    p = make()
    update = handshake_update(p)
    message = "Runtime error: NOT_FOUND: Instance with model gpt://b1g/gone not found"
    error = {"type": "server_error", "code": None, "message": message}
    feed(p, "error", error={**error, "event_id": update["event_id"]})
    assert p.fatal is not None and p.fatal.kind == "model"
    assert "NOT_FOUND" in p.fatal.message
    assert p.take_outgoing() == []  # no PCM retry: the model is the problem


# ---------------------------------------------------------------- assistant words


def test_the_first_text_family_of_an_item_wins() -> None:
    p = make("pcm", Dialect.YANDEX)
    feed(p, "session.created", session={})
    feed(p, "session.updated", session=pcm_session(24000))
    first = feed(p, "response.output_text.delta", response_id="r", item_id="a", delta="Hi")
    doubled = feed(
        p, "response.output_audio_transcript.delta", response_id="r", item_id="a", delta="Hi"
    )
    done = feed(p, "response.output_text.done", response_id="r", item_id="a", text="Hi")
    assert first == [AssistantTranscriptDelta("r", "a", "Hi")]
    assert doubled == []
    assert done == [AssistantTranscriptDone("r", "a", "Hi")]
    # Another item may use the other family.
    other = feed(
        p, "response.output_audio_transcript.done", response_id="r", item_id="b", transcript="Yo"
    )
    assert other == [AssistantTranscriptDone("r", "b", "Yo")]
    assert p.stats["assistant_text_duplicates_skipped"] == 1
