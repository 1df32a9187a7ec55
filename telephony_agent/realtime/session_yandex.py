"""The `session` object of a Yandex AI Studio `session.update`, as Yandex's examples send it.

What Yandex differs in (protocol notes §8): no `type`; `output_modalities` is
`["text", "audio"]` in every official example, and the agent's words then come as
`response.output_text.*`; audio is PCM16 with the rate always stated (24 kHz in, the
asked rate out, read back from `session.updated`); turn detection is `server_vad` with
threshold, prefix padding, silence duration, create and interrupt flags.

What Yandex's reference marks unsupported is never sent, and the call does it itself:
`idle_timeout_ms` (the Call's own idle reprompts), input/output buffer clears, DTMF
events (digits reach the model as a text message). `semantic_vad` and noise reduction
are not documented there: `server_vad` with the configured knobs is sent instead, and no
noise reduction. G.711 is not documented either; it is sent only when passthrough is
forced on (`[provider] g711_passthrough = "on"`), and a refusal falls back to PCM.
"""

from __future__ import annotations

from typing import Any

from telephony_agent.realtime.session_config import SessionConfig
from telephony_agent.realtime.session_parts import add_tools, ga_format, server_vad, transcription

#: What Yandex's examples ask for: the agent's text and its speech.
YANDEX_MODALITIES = ("text", "audio")


def yandex_session(config: SessionConfig) -> dict[str, Any]:
    session: dict[str, Any] = {
        "instructions": config.instructions,
        "output_modalities": list(YANDEX_MODALITIES),
    }
    vad = config.vad
    audio_in: dict[str, Any] = {
        "format": ga_format(config.audio_format, config.input_rate),
        "turn_detection": None if vad is None else server_vad(vad, idle_timeout=False),
    }
    heard = transcription(config)
    if heard is not None:
        audio_in["transcription"] = heard
    audio_out: dict[str, Any] = {"format": ga_format(config.audio_format, config.output_rate)}
    if config.voice:
        audio_out["voice"] = config.voice
    session["audio"] = {"input": audio_in, "output": audio_out}
    add_tools(session, config)
    return session
