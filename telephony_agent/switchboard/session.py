"""The Realtime session a call asks for, built from settings, the call's profile and its leg.

Why here and not in the CLI: every front door (SIP, browser, and the `ask` command)
needs the same session configuration, and a lower layer must never reach up into
`commands/` for it.

Two choices depend on the leg as well as on the provider:

* G.711 passthrough (`[provider] g711_passthrough`): a PCMU or PCMA leg and a provider
  that takes `audio/pcmu`/`audio/pcma` (OpenAI, the local backend in the GA dialect;
  not Yandex) exchange the call's G.711 bytes with the model untouched. "on" tries it
  with any provider, and a refusal falls back to PCM for that call.
* `[agent] output_rate = "leg"`: the model is asked for the leg's own rate where the
  provider honours any rate (Yandex, the local backend), so nothing is resampled on the
  way out; a provider with fixed PCM rates (OpenAI: 24 kHz) is asked for its own.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from telephony_agent.call.backchannel import parse_backchannels
from telephony_agent.call.barge_in import TurnPolicy
from telephony_agent.config import Settings
from telephony_agent.config_provider import effective_voice
from telephony_agent.media.leg import LegFormat
from telephony_agent.realtime.dialect import Dialect
from telephony_agent.realtime.providers import PRESETS
from telephony_agent.realtime.session_config import (
    AudioFormat,
    SessionConfig,
    ToolSpec,
    VadConfig,
)

__all__ = [
    "audio_format_for",
    "max_session_s",
    "output_rate_for",
    "session_config",
    "turn_policy",
    "turns_guarded",
]

#: PCM rate asked for when the leg's rate is not known (or not honoured).
DEFAULT_PCM_RATE = 24000
_G711_LAWS: dict[str, AudioFormat] = {"PCMU": "pcmu", "PCMA": "pcma"}


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
    dialect: Dialect | None = None,
    leg: LegFormat | None = None,
    instructions: str | None = None,
    voice: str | None = None,
    language: str | None = None,
    manual_turns: bool = False,
    tools: Sequence[ToolSpec] = (),
) -> SessionConfig:
    """The session configuration for one call; profile values override `[agent]`.

    `dialect` is the endpoint's (the preset's when not given); `leg` is the call's leg
    format when the front door knows it before the session opens.
    """
    preset = PRESETS.get(provider_name)
    wire = dialect or (preset.dialect if preset is not None else Dialect.GA)
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
            type=vad.type,
            eagerness=vad.eagerness if vad.type == "semantic_vad" else None,
        )
    return SessionConfig(
        instructions=settings.agent.instructions if instructions is None else instructions,
        voice=voice or effective_voice(settings, provider_name),
        output_rate=output_rate_for(settings, provider_name, wire, leg),
        vad=vad_config,
        transcription_model=_transcription_model(settings, provider_name),
        transcription_language=language,
        tools=list(tools),
        extra=copy.deepcopy(dict(settings.provider.extra)),
        audio_format=audio_format_for(settings, provider_name, wire, leg),
        noise_reduction=settings.agent.noise_reduction,
    )


def audio_format_for(
    settings: Settings, provider_name: str, dialect: Dialect, leg: LegFormat | None
) -> AudioFormat:
    """G.711 both ways when the leg is G.711 and passthrough applies; else PCM."""
    law = _G711_LAWS.get(leg.codec.upper()) if leg is not None else None
    mode = settings.provider.g711_passthrough
    if law is None or mode == "off":
        return "pcm"
    if mode == "on":
        return law
    preset = PRESETS.get(provider_name)
    accepts = preset is not None and preset.accepts_g711 and dialect is Dialect.GA
    return law if accepts else "pcm"


def output_rate_for(
    settings: Settings, provider_name: str, dialect: Dialect, leg: LegFormat | None
) -> int:
    """`[agent] output_rate`, with "leg" resolved to a rate the provider will honour."""
    configured = settings.agent.output_rate
    if configured != "leg":
        return configured
    if leg is None or dialect is Dialect.BETA:  # beta's pcm16 has no rate field
        return DEFAULT_PCM_RATE
    preset = PRESETS.get(provider_name)
    allowed = preset.pcm_output_rates if preset is not None else None
    if allowed is not None and leg.sample_rate not in allowed:
        return allowed[0]
    return leg.sample_rate


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
