"""The `session` object of OpenAI's retired beta shape, kept for servers that still want it.

Beta has no rate field: `pcm16` is 24 kHz, and `session.updated` tells what we got.
G.711 is `g711_ulaw` / `g711_alaw`.
"""

from __future__ import annotations

from typing import Any

from telephony_agent.realtime.session_config import AudioFormat, SessionConfig
from telephony_agent.realtime.session_parts import add_tools, server_vad, transcription

_BETA_FORMATS: dict[AudioFormat, str] = {"pcm": "pcm16", "pcmu": "g711_ulaw", "pcma": "g711_alaw"}


def beta_session(config: SessionConfig) -> dict[str, Any]:
    vad = config.vad
    session: dict[str, Any] = {
        "instructions": config.instructions,
        "modalities": ["audio", "text"],
        "input_audio_format": _BETA_FORMATS[config.audio_format],
        "output_audio_format": _BETA_FORMATS[config.audio_format],
        "turn_detection": None if vad is None else server_vad(vad, idle_timeout=True),
    }
    if config.voice:
        session["voice"] = config.voice
    heard = transcription(config)
    if heard is not None:
        session["input_audio_transcription"] = heard
    add_tools(session, config)
    return session
