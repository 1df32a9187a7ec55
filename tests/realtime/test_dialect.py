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


def test_yandex_shape_is_yandex_example() -> None:
    # As Yandex's own examples send it: no `type`, text and audio out, explicit rates.
    session = session_payload(config(output_rate=48000), Dialect.YANDEX)
    assert session == {
        "instructions": "Be brief.",
        "output_modalities": ["text", "audio"],
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
            "output": {"format": {"type": "audio/pcm", "rate": 48000}, "voice": "marin"},
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


def _words(obj: object) -> set[str]:
    """Every key and string value anywhere in a JSON-like object."""
    if isinstance(obj, dict):
        return set(obj) | {w for value in obj.values() for w in _words(value)}
    if isinstance(obj, list):
        return {w for value in obj for w in _words(value)}
    return {obj} if isinstance(obj, str) else set()


def test_yandex_never_sends_what_it_marks_unsupported() -> None:
    # idle_timeout_ms is done by the call's own idle reprompts; semantic VAD and noise
    # reduction are not documented, so server_vad with the configured knobs goes instead.
    vad = VadConfig(idle_timeout_ms=6000, type="semantic_vad", eagerness="high")
    session = session_payload(config(vad=vad, noise_reduction="far_field"), Dialect.YANDEX)
    words = _words(session)
    for absent in ("idle_timeout_ms", "semantic_vad", "eagerness", "noise_reduction", "realtime"):
        assert absent not in words
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert "type" not in session


def test_ga_semantic_vad_noise_reduction_and_idle_timeout() -> None:
    semantic = VadConfig(type="semantic_vad", eagerness="low", interrupt_response=False)
    session = session_payload(config(vad=semantic, noise_reduction="near_field"), Dialect.GA)
    audio_in = session["audio"]["input"]
    assert audio_in["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "low",
        "create_response": True,
        "interrupt_response": False,
    }
    assert audio_in["noise_reduction"] == {"type": "near_field"}
    assert session["output_modalities"] == ["audio"]
    # idle_timeout_ms belongs to server_vad only.
    server = session_payload(config(vad=VadConfig(idle_timeout_ms=7000)), Dialect.GA)
    assert server["audio"]["input"]["turn_detection"]["idle_timeout_ms"] == 7000
    assert "noise_reduction" not in server["audio"]["input"]


@pytest.mark.parametrize(
    ("dialect", "law", "expected"),
    [
        (Dialect.GA, "pcmu", {"type": "audio/pcmu"}),
        (Dialect.GA, "pcma", {"type": "audio/pcma"}),
        (Dialect.YANDEX, "pcmu", {"type": "audio/pcmu"}),
    ],
)
def test_g711_formats_both_ways(dialect: Dialect, law: str, expected: dict[str, str]) -> None:
    session = session_payload(config(audio_format=law), dialect)
    assert session["audio"]["input"]["format"] == expected
    assert session["audio"]["output"]["format"] == expected


def test_beta_g711_names() -> None:
    session = session_payload(config(audio_format="pcma"), Dialect.BETA)
    assert (session["input_audio_format"], session["output_audio_format"]) == (
        "g711_alaw",
        "g711_alaw",
    )


def test_pcm_fallback_keeps_everything_but_the_format() -> None:
    g711 = config(audio_format="pcmu", output_rate=16000)
    assert (g711.wire_input_rate, g711.wire_output_rate, g711.sample_bytes) == (8000, 8000, 1)
    pcm = g711.pcm_fallback()
    assert (pcm.audio_format, pcm.wire_input_rate, pcm.wire_output_rate) == ("pcm", 24000, 16000)
    assert pcm.sample_bytes == 2
    assert session_payload(pcm, Dialect.GA)["audio"]["output"]["format"] == {
        "type": "audio/pcm",
        "rate": 16000,
    }


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
