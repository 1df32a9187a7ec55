"""The Realtime session a call asks for, built from settings and the call's profile.

Why here and not in the CLI: every front door (SIP, browser, and the `ask` command)
needs the same session configuration, and a lower layer must never reach up into
`commands/` for it.
"""

from __future__ import annotations

from collections.abc import Sequence

from telephony_agent.config import Settings, effective_voice
from telephony_agent.realtime.providers import PRESETS
from telephony_agent.realtime.session_config import SessionConfig, ToolSpec, VadConfig

__all__ = ["max_session_s", "session_config"]


def session_config(
    settings: Settings,
    provider_name: str,
    *,
    instructions: str | None = None,
    voice: str | None = None,
    language: str | None = None,
    manual_turns: bool = False,
    tools: Sequence[ToolSpec] = (),
) -> SessionConfig:
    """The session configuration for one call; profile values override `[agent]`."""
    vad = settings.vad
    vad_config = None
    if vad.enabled and not manual_turns:
        vad_config = VadConfig(
            threshold=vad.threshold,
            prefix_padding_ms=vad.prefix_padding_ms,
            silence_duration_ms=vad.silence_duration_ms,
            create_response=True,
            interrupt_response=vad.interrupt_response,
            idle_timeout_ms=vad.idle_timeout_ms,
        )
    return SessionConfig(
        instructions=settings.agent.instructions if instructions is None else instructions,
        voice=voice or effective_voice(settings, provider_name),
        output_rate=settings.agent.output_rate,
        vad=vad_config,
        transcription_model=_transcription_model(settings, provider_name),
        transcription_language=language,
        tools=list(tools),
    )


def _transcription_model(settings: Settings, provider_name: str) -> str | None:
    """`[agent] transcription_model`; else the provider's default, so callers' words are
    kept where the provider can transcribe; `"none"` turns it off."""
    configured = settings.agent.transcription_model
    if configured is not None:
        return None if configured.lower() == "none" else configured
    preset = PRESETS.get(provider_name)
    return preset.default_transcription_model if preset is not None else None


def max_session_s(settings: Settings, provider_name: str) -> float | None:
    """`[provider] max_session_s` (0: never roll over); else the provider's known limit
    (Yandex ends a session after about five minutes)."""
    configured = settings.provider.max_session_s
    if configured is not None:
        return configured or None
    preset = PRESETS.get(provider_name)
    return preset.max_session_s if preset is not None else None
