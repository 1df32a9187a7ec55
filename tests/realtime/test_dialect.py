"""The session.update payload in GA, beta and Yandex shapes."""

from __future__ import annotations

import pytest

from telephony_agent.realtime.dialect import (
    BETA_TO_GA,
    Dialect,
    deep_merge,
    normalize_event_type,
    session_payload,
)
from telephony_agent.realtime.session_config import SessionConfig, ToolSpec, VadConfig

TOOL = ToolSpec(
    name="end_call",
    description="Hang up.",
    parameters={"type": "object", "properties": {"reason": {"type": "string"}}},
)


def config(**overrides: object) -> SessionConfig:
    base = SessionConfig(
        instructions="Be brief.",
        voice="marin",
        vad=VadConfig(threshold=0.4, silence_duration_ms=400),
        transcription_model="gpt-4o-mini-transcribe",
        tools=[TOOL],
    )
    for key, value in overrides.items():
        setattr(base, key, value)
    return base


def test_ga_shape() -> None:
    session = session_payload(config(output_rate=24000), Dialect.GA)
    assert session == {
        "type": "realtime",
        "instructions": "Be brief.",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.4,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 400,
                    "create_response": True,
                    "interrupt_response": True,
                },
                "transcription": {"model": "gpt-4o-mini-transcribe"},
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
        },
        "tools": [
            {
                "type": "function",
                "name": "end_call",
                "description": "Hang up.",
                "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}},
            }
        ],
        "tool_choice": "auto",
    }


def test_yandex_is_ga_without_type_and_with_explicit_rates() -> None:
    ga = session_payload(config(output_rate=48000), Dialect.GA)
    ydx = session_payload(config(output_rate=48000), Dialect.YANDEX)
    assert "type" not in ydx
    assert ydx["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 48000}
    assert ydx["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    ga.pop("type")
    assert ga == ydx


def test_yandex_extra_is_merged_deeply() -> None:
    extra = {
        "audio": {"output": {"role": "narrator"}, "input": {"languages": ["ru", "en"]}},
        "max_output_tokens": 512,
    }
    session = session_payload(config(extra=extra), Dialect.YANDEX)
    assert session["audio"]["output"] == {
        "format": {"type": "audio/pcm", "rate": 24000},
        "voice": "marin",
        "role": "narrator",
    }
    assert session["audio"]["input"]["languages"] == ["ru", "en"]
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["max_output_tokens"] == 512


def test_beta_shape() -> None:
    session = session_payload(config(), Dialect.BETA)
    assert session["modalities"] == ["audio", "text"]
    assert session["input_audio_format"] == "pcm16"
    assert session["output_audio_format"] == "pcm16"
    assert session["voice"] == "marin"
    assert session["turn_detection"]["type"] == "server_vad"
    assert session["input_audio_transcription"] == {"model": "gpt-4o-mini-transcribe"}
    assert session["tools"][0]["type"] == "function"
    assert "audio" not in session
    assert "type" not in session
    assert "output_modalities" not in session


@pytest.mark.parametrize("dialect", list(Dialect))
def test_manual_turns_send_explicit_null_turn_detection(dialect: Dialect) -> None:
    session = session_payload(config(vad=None), dialect)
    if dialect is Dialect.BETA:
        assert session["turn_detection"] is None
    else:
        assert session["audio"]["input"]["turn_detection"] is None


@pytest.mark.parametrize("dialect", list(Dialect))
def test_optional_fields_omitted(dialect: Dialect) -> None:
    cfg = SessionConfig(instructions="x", voice=None, transcription_model=None, tools=[])
    text = repr(session_payload(cfg, dialect))
    for absent in ("voice", "transcription", "tools", "tool_choice", "idle_timeout_ms"):
        assert absent not in text


def test_idle_timeout_only_when_set() -> None:
    session = session_payload(config(vad=VadConfig(idle_timeout_ms=6000)), Dialect.GA)
    assert session["audio"]["input"]["turn_detection"]["idle_timeout_ms"] == 6000


def test_payload_does_not_alias_config() -> None:
    cfg = config(extra={"audio": {"output": {"role": "a"}}})
    session = session_payload(cfg, Dialect.GA)
    session["tools"][0]["parameters"]["x"] = 1
    session["audio"]["output"]["role"] = "changed"
    assert "x" not in TOOL.parameters
    assert cfg.extra == {"audio": {"output": {"role": "a"}}}


def test_deep_merge_replaces_non_objects() -> None:
    target = {"a": {"b": 1, "c": {"d": 2}}, "e": [1]}
    deep_merge(target, {"a": {"c": {"f": 3}, "b": None}, "e": [2]})
    assert target == {"a": {"b": None, "c": {"d": 2, "f": 3}}, "e": [2]}


def test_beta_names_map_to_ga() -> None:
    assert normalize_event_type("response.audio.delta") == "response.output_audio.delta"
    assert normalize_event_type("conversation.item.created") == "conversation.item.added"
    assert normalize_event_type("response.output_audio.delta") == "response.output_audio.delta"
    assert normalize_event_type("foo.bar") == "foo.bar"
    assert all(v.startswith(("response.output_", "conversation.")) for v in BETA_TO_GA.values())
