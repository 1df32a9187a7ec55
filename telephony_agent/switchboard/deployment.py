"""Everything a new call is set up from, as one value swapped whole on reload.

Why one value: a reload (SIGHUP) must never give a call half of the old settings
and half of the new. The switchboard holds one `Deployment`; each admission keeps
the one it was admitted under, so live calls keep their profile, tools and
provider while new calls get the new ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from telephony_agent.agent import Profile, ProfileBook
from telephony_agent.audio.resample import INBOUND_RATES
from telephony_agent.call.hold import RECORDING_RATE, HoldAudio, ToolFeedback
from telephony_agent.call.profile import GREETING_AUDIO_RATE
from telephony_agent.config import Settings, agent_defaults
from telephony_agent.config_provider import local_endpoint, remote_endpoint, resolve_provider
from telephony_agent.errors import ConfigError, InputFileError
from telephony_agent.logs import register_secret
from telephony_agent.media.audiofile import decode_audio_file
from telephony_agent.realtime.providers import Endpoint
from telephony_agent.tools.binding import BusinessTools

__all__ = ["Deployment"]


@dataclass(frozen=True)
class Deployment:
    """Settings, profiles, tools and provider endpoints, validated together."""

    settings: Settings
    #: The deployment's provider; profiles without a `provider`/`model` use it.
    endpoint: Endpoint
    provider_name: str
    profiles: ProfileBook
    tools: BusinessTools
    #: Endpoints of profiles that override the provider or model, by profile name.
    profile_endpoints: Mapping[str, tuple[str, Endpoint]] = field(default_factory=dict)
    #: Greeting recordings, decoded once to PCM16 at `GREETING_AUDIO_RATE`, by profile.
    greeting_audio: Mapping[str, bytes] = field(default_factory=dict)
    #: Filler and hold recordings, decoded once, by profile (the tone needs no file).
    tool_wait_audio: Mapping[str, HoldAudio] = field(default_factory=dict)

    @classmethod
    def single_provider(
        cls,
        settings: Settings,
        endpoint: Endpoint,
        provider_name: str,
        environ: Mapping[str, str] | None = None,
    ) -> Deployment:
        """Profiles and tools as the settings declare them, every profile on one provider.

        Loads the tools (imports Python tools, reads webhook secrets from `environ`), so a
        broken tool stops here, before anything listens.
        """
        profiles = ProfileBook.build(settings.profiles, agent_defaults(settings.agent))
        return cls(
            settings=settings,
            endpoint=endpoint,
            provider_name=provider_name,
            profiles=profiles,
            tools=BusinessTools.load(settings.tools, os.environ if environ is None else environ),
            greeting_audio=_greeting_recordings(profiles, GREETING_AUDIO_RATE),
            tool_wait_audio=_tool_wait_recordings(profiles),
        )

    @classmethod
    def build(
        cls,
        settings: Settings,
        endpoint: Endpoint,
        provider_name: str,
        *,
        environ: Mapping[str, str] | None = None,
        local_port: int | None = None,
    ) -> Deployment:
        """As `single_provider`, plus an endpoint for each profile that names its own
        `provider` or `model` (its key found as for the deployment's provider).

        `local_port` is the running local backend's port, needed by profiles that ask
        for `provider = "local"` on a deployment whose own provider is remote.
        """
        env = os.environ if environ is None else environ
        base = cls.single_provider(settings, endpoint, provider_name, env)
        overrides: dict[str, tuple[str, Endpoint]] = {}
        for profile in settings.profiles:
            if profile.provider is None and profile.model is None:
                continue
            overrides[profile.name] = _profile_endpoint(settings, profile, env, local_port)
        return replace(base, profile_endpoints=overrides)

    def endpoint_for(self, profile: Profile) -> tuple[str, Endpoint]:
        """The provider name and endpoint a call of `profile` talks to."""
        return self.profile_endpoints.get(profile.name, (self.provider_name, self.endpoint))

    def tool_feedback(self, profile: Profile) -> ToolFeedback:
        """What a call of `profile` plays while a tool runs, with its decoded audio."""
        return ToolFeedback.from_wait(profile.tool_wait, self.tool_wait_audio.get(profile.name))


def _profile_endpoint(
    settings: Settings, profile: Profile, env: Mapping[str, str], local_port: int | None
) -> tuple[str, Endpoint]:
    provider = replace(
        settings.provider,
        name=profile.provider or settings.provider.name,
        model=profile.model or settings.provider.model,
    )
    resolved = resolve_provider(replace(settings, provider=provider), env)
    register_secret(resolved.api_key)
    if resolved.name == "local":
        if local_port is None:
            raise ConfigError(
                f"profiles[{profile.name}].provider = 'local': the local backend is not running"
            )
        return "local", local_endpoint(settings, local_port, profile.model)
    return resolved.name, remote_endpoint(replace(settings, provider=provider), resolved)


def _greeting_recordings(profiles: ProfileBook, rate: int) -> dict[str, bytes]:
    """Decode each profile's `greeting_audio` now, so a bad file fails the start or the
    reload with a clear line instead of a call."""
    recordings: dict[str, bytes] = {}
    for profile in (*profiles.profiles, profiles.default):
        path = profile.greeting_audio
        if path is None or profile.name in recordings:
            continue
        try:
            pcm = decode_audio_file(path, rate)
        except InputFileError as exc:
            raise ConfigError(f"profiles[{profile.name}].greeting_audio: {exc}") from None
        recordings[profile.name] = pcm.astype("<i2", copy=False).tobytes()
    return recordings


def _tool_wait_recordings(profiles: ProfileBook) -> dict[str, HoldAudio]:
    """Decode each profile's `filler_audio` or `hold_audio` file now (a bad file fails the
    start or the reload, not a call) and make it at every leg rate, as the tone if any
    profile uses it, so no call's setup pays for it."""
    recordings: dict[str, HoldAudio] = {}
    made: dict[tuple[Path, bool], HoldAudio] = {}
    every = (*profiles.profiles, profiles.default)
    for profile in every:
        wait = profile.tool_wait
        if wait.audio is None or profile.name in recordings:
            continue
        loop = wait.feedback == "hold"
        audio = made.get((wait.audio, loop))
        if audio is None:
            try:
                pcm = decode_audio_file(wait.audio, RECORDING_RATE)
            except InputFileError as exc:
                key = "hold_audio" if loop else "filler_audio"
                raise ConfigError(f"profiles[{profile.name}].{key}: {exc}") from None
            audio = made[(wait.audio, loop)] = HoldAudio(pcm, RECORDING_RATE, loop=loop)
            audio.prepare(INBOUND_RATES)
        recordings[profile.name] = audio
    if any(p.tool_wait.feedback == "hold" and p.tool_wait.audio is None for p in every):
        HoldAudio.tone().prepare(INBOUND_RATES)
    return recordings
