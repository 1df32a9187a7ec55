"""The Realtime session a call asks for, built from settings and the call's profile.

Why here and not in the CLI: every front door (SIP, browser, and the `ask` command)
needs the same session configuration, and a lower layer must never reach up into
`commands/` for it.
"""

from __future__ import annotations

from collections.abc import Sequence

from telephony_agent.call.backchannel import parse_backchannels
from telephony_agent.call.barge_in import TurnPolicy
from telephony_agent.config import Settings, effective_voice
from telephony_agent.realtime.providers import PRESETS
from telephony_agent.realtime.session_config import SessionConfig, ToolSpec, VadConfig

__all__ = ["max_session_s", "session_config", "turn_policy", "turns_guarded"]


def turn_policy(settings: Settings) -> TurnPolicy:
    """`[turns]` as a call uses it."""
    turns = settings.turns
    return TurnPolicy(
        min_speech_ms=turns.min_speech_ms,
        duck_db=turns.duck_db,
        echo_guard=turns.echo_guard,
        echo_window_ms=turns.echo_window_ms,
        backchannels=parse_backchannels(turns.backchannels),
        backchannel_max_ms=turns.backchannel_max_ms,
        local_vad=turns.local_vad,
    )


def turns_guarded(settings: Settings) -> bool:
    """Whether speech over the agent is judged before it interrupts."""
    return turn_policy(settings).guarded


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
        # With the barge-in guard the Call decides what interrupts and answers each
        # real turn once itself; the server must do neither (docs/turn-taking.md).
        guarded = turns_guarded(settings)
        vad_config = VadConfig(
            threshold=vad.threshold,
            prefix_padding_ms=vad.prefix_padding_ms,
            silence_duration_ms=vad.silence_duration_ms,
            create_response=not guarded,
            interrupt_response=vad.interrupt_response and not guarded,
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
