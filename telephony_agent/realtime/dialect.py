"""The three dialects of the Realtime protocol and how our session.update looks in each.

Why one module: dialects differ in a few event names and in the shape of the session
object, and nowhere else. Keeping both tables here means adding a provider never adds
a code path to the client.

* GA: OpenAI's current protocol (`type:"realtime"`, nested `audio.{input,output}`).
* BETA: OpenAI's retired shape (`modalities`, `pcm16`, top-level `turn_detection`).
  Its event names are parsed for every dialect, because servers mix them.
* YANDEX: the GA shape without `type:"realtime"`, with explicit rates; Yandex still
  sends `conversation.item.created` and the assistant text as `response.output_text.*`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from telephony_agent.realtime.session_config import SessionConfig, VadConfig


class Dialect(StrEnum):
    GA = "ga"
    BETA = "beta"
    YANDEX = "yandex"


#: Beta (and Yandex legacy) server event names → GA names.
BETA_TO_GA: Mapping[str, str] = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "conversation.item.created": "conversation.item.added",
}


def normalize_event_type(name: str) -> str:
    """The GA name of a server event type (identity for GA names and unknown types)."""
    return BETA_TO_GA.get(name, name)


def assistant_text_type(dialect: Dialect) -> str:
    """Content part type of assistant text inside a message item."""
    return "text" if dialect is Dialect.BETA else "output_text"


def session_payload(config: SessionConfig, dialect: Dialect) -> dict[str, Any]:
    """The `session` object of our `session.update` in the dialect's shape."""
    session = _beta_session(config) if dialect is Dialect.BETA else _ga_session(config, dialect)
    if config.extra:
        deep_merge(session, config.extra)
    return session


def _ga_session(config: SessionConfig, dialect: Dialect) -> dict[str, Any]:
    session: dict[str, Any] = {}
    if dialect is Dialect.GA:
        session["type"] = "realtime"
    session["instructions"] = config.instructions
    session["output_modalities"] = ["audio"]
    audio_in: dict[str, Any] = {
        "format": {"type": "audio/pcm", "rate": config.input_rate},
        "turn_detection": _turn_detection(config.vad),
    }
    if config.transcription_model:
        audio_in["transcription"] = _transcription(config)
    audio_out: dict[str, Any] = {"format": {"type": "audio/pcm", "rate": config.output_rate}}
    if config.voice:
        audio_out["voice"] = config.voice
    session["audio"] = {"input": audio_in, "output": audio_out}
    _add_tools(session, config)
    return session


def _beta_session(config: SessionConfig) -> dict[str, Any]:
    # Beta has no rate field: pcm16 is 24 kHz; session.updated tells what we got.
    session: dict[str, Any] = {
        "instructions": config.instructions,
        "modalities": ["audio", "text"],
        "input_audio_format": "pcm16",
        "output_audio_format": "pcm16",
        "turn_detection": _turn_detection(config.vad),
    }
    if config.voice:
        session["voice"] = config.voice
    if config.transcription_model:
        session["input_audio_transcription"] = _transcription(config)
    _add_tools(session, config)
    return session


def _turn_detection(vad: VadConfig | None) -> dict[str, Any] | None:
    # An explicit null disables the provider's default server VAD (manual turns).
    if vad is None:
        return None
    detection: dict[str, Any] = {
        "type": "server_vad",
        "threshold": vad.threshold,
        "prefix_padding_ms": vad.prefix_padding_ms,
        "silence_duration_ms": vad.silence_duration_ms,
        "create_response": vad.create_response,
        "interrupt_response": vad.interrupt_response,
    }
    if vad.idle_timeout_ms is not None:
        detection["idle_timeout_ms"] = vad.idle_timeout_ms
    return detection


def _add_tools(session: dict[str, Any], config: SessionConfig) -> None:
    if not config.tools:
        return
    session["tools"] = [
        {
            "type": "function",
            "name": tool.name,
            "description": tool.description,
            "parameters": copy.deepcopy(tool.parameters),
        }
        for tool in config.tools
    ]
    session["tool_choice"] = "auto"


def deep_merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Merge `extra` into `target` in place: nested objects merge, anything else replaces."""
    for key, value in extra.items():
        current = target.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            deep_merge(current, value)
        else:
            target[key] = copy.deepcopy(value)


def _transcription(config: SessionConfig) -> dict[str, Any]:
    """Input transcription settings: the model, and the language hint when one is set."""
    result: dict[str, Any] = {"model": config.transcription_model}
    if config.transcription_language:
        result["language"] = config.transcription_language
    return result
