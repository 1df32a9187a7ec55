"""Pieces every dialect's session builder shares: tools, transcription, formats, VAD.

Why a module of its own: the three builders (`session_ga`, `session_yandex`,
`session_beta`) differ in what they send, not in how one tool or one format is
written, and a tool schema rendered two ways would be a bug waiting in one of them.
"""

from __future__ import annotations

import copy
from typing import Any

from telephony_agent.realtime.session_config import AudioFormat, SessionConfig, VadConfig

#: GA / Yandex format types (`audio.{input,output}.format.type`).
GA_FORMAT_TYPES: dict[AudioFormat, str] = {
    "pcm": "audio/pcm",
    "pcmu": "audio/pcmu",
    "pcma": "audio/pcma",
}


def ga_format(audio_format: AudioFormat, rate: int) -> dict[str, Any]:
    """`{type, rate}` for PCM16 (the rate is always stated), `{type}` for G.711 (8 kHz)."""
    if audio_format == "pcm":
        return {"type": GA_FORMAT_TYPES["pcm"], "rate": rate}
    return {"type": GA_FORMAT_TYPES[audio_format]}


def server_vad(vad: VadConfig, *, idle_timeout: bool) -> dict[str, Any]:
    """`server_vad` with its documented knobs; `idle_timeout_ms` only where supported."""
    detection: dict[str, Any] = {
        "type": "server_vad",
        "threshold": vad.threshold,
        "prefix_padding_ms": vad.prefix_padding_ms,
        "silence_duration_ms": vad.silence_duration_ms,
        "create_response": vad.create_response,
        "interrupt_response": vad.interrupt_response,
    }
    if idle_timeout and vad.idle_timeout_ms is not None:
        detection["idle_timeout_ms"] = vad.idle_timeout_ms
    return detection


def transcription(config: SessionConfig) -> dict[str, Any] | None:
    """Input transcription settings: the model, and the language hint when one is set."""
    if not config.transcription_model:
        return None
    result: dict[str, Any] = {"model": config.transcription_model}
    if config.transcription_language:
        result["language"] = config.transcription_language
    return result


def add_tools(session: dict[str, Any], config: SessionConfig) -> None:
    """`tools` (function tools) and `tool_choice: auto`, when the call has any tools."""
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
