"""The `session` object of an OpenAI GA `session.update`.

What GA differs in (protocol notes §8): `type: "realtime"` is required; the output is
`["audio"]` alone, because GA refuses text and audio together (the transcript comes as
`response.output_audio_transcript.*` anyway); PCM is 24 kHz only, and G.711
(`audio/pcmu`, `audio/pcma`) is accepted both ways; turn detection may be `server_vad`
(with `idle_timeout_ms`) or `semantic_vad` (with `eagerness`); input noise reduction is
`near_field` or `far_field`.
"""

from __future__ import annotations

from typing import Any

from telephony_agent.realtime.session_config import SessionConfig, VadConfig
from telephony_agent.realtime.session_parts import add_tools, ga_format, server_vad, transcription


def ga_session(config: SessionConfig) -> dict[str, Any]:
    session: dict[str, Any] = {
        "type": "realtime",
        "instructions": config.instructions,
        "output_modalities": ["audio"],
    }
    audio_in: dict[str, Any] = {
        "format": ga_format(config.audio_format, config.input_rate),
        "turn_detection": _turn_detection(config.vad),
    }
    heard = transcription(config)
    if heard is not None:
        audio_in["transcription"] = heard
    if config.noise_reduction is not None:
        audio_in["noise_reduction"] = {"type": config.noise_reduction}
    audio_out: dict[str, Any] = {"format": ga_format(config.audio_format, config.output_rate)}
    if config.voice:
        audio_out["voice"] = config.voice
    session["audio"] = {"input": audio_in, "output": audio_out}
    add_tools(session, config)
    return session


def _turn_detection(vad: VadConfig | None) -> dict[str, Any] | None:
    # An explicit null disables the provider's default server VAD (manual turns).
    if vad is None:
        return None
    if vad.type == "semantic_vad":
        detection: dict[str, Any] = {"type": "semantic_vad"}
        if vad.eagerness is not None:
            detection["eagerness"] = vad.eagerness
        detection["create_response"] = vad.create_response
        detection["interrupt_response"] = vad.interrupt_response
        return detection
    return server_vad(vad, idle_timeout=True)
