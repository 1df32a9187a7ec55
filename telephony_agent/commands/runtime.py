"""What every command needs before a call: settings, logging, a provider endpoint.

When no key is configured the built-in local backend is started in-process on a
free loopback port, so the same code path serves demos, tests and production.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telephony_agent.config import Settings, load_settings, module_levels
from telephony_agent.config_provider import (
    ResolvedProvider,
    local_endpoint,
    remote_endpoint,
    resolve_provider,
)
from telephony_agent.errors import ConfigError
from telephony_agent.logs import configure_logging
from telephony_agent.realtime.backend import (
    BackendOptions,
    PhraseError,
    RunningBackend,
    ScriptError,
    start_backend,
)
from telephony_agent.realtime.providers import PRESETS, Endpoint
from telephony_agent.switchboard import Deployment


def settings_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load the settings file and apply the non-secret command-line overrides."""
    overrides: dict[str, dict[str, Any]] = {}
    provider = getattr(args, "provider", None)
    if provider:
        if provider not in PRESETS:
            raise ConfigError(f"--provider {provider!r}: expected one of {', '.join(PRESETS)}")
        overrides.setdefault("provider", {})["name"] = provider
    if getattr(args, "log_level", None):
        overrides.setdefault("log", {})["level"] = args.log_level
    if getattr(args, "instructions", None):
        overrides.setdefault("agent", {})["instructions"] = args.instructions
    if getattr(args, "voice", None):
        overrides.setdefault("agent", {})["voice"] = args.voice
    if getattr(args, "sip_listen", None):
        overrides.setdefault("sip", {})["listen"] = args.sip_listen
    if getattr(args, "http_listen", None):
        overrides.setdefault("http", {})["listen"] = args.http_listen
    if getattr(args, "max_calls", None) is not None:
        overrides.setdefault("sip", {})["max_calls"] = args.max_calls
    config_path: Path | None = getattr(args, "config", None)
    return load_settings(config_path, environ=environ, overrides=overrides)


@dataclass
class ProviderRuntime:
    """An endpoint ready to open sessions on, and the local backend behind it if any."""

    endpoint: Endpoint
    resolved: ResolvedProvider
    backend: RunningBackend | None

    def deployment(
        self, settings: Settings, environ: Mapping[str, str] | None = None
    ) -> Deployment:
        """Profiles, tools and provider endpoints for `settings` (at start and on reload)."""
        return Deployment.build(
            settings,
            self.endpoint,
            self.resolved.name,
            environ=environ,
            local_port=self.backend.port if self.backend is not None else None,
        )

    async def close(self) -> None:
        if self.backend is not None:
            await self.backend.close()


async def open_provider(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> ProviderRuntime:
    """Resolve the provider; start the local backend when that is what runs."""
    resolved = resolve_provider(settings, environ)
    configure_logging(
        settings.log.level,
        settings.log.format,
        secrets=[resolved.api_key],
        levels=module_levels(settings.log.levels),
    )
    if resolved.notice:
        print(resolved.notice, file=sys.stderr)
    wants_local = any(profile.provider == "local" for profile in settings.profiles)
    if resolved.name != "local" and not wants_local:
        return ProviderRuntime(remote_endpoint(settings, resolved), resolved, None)
    script = Path(settings.local.script) if settings.local.script else None
    if settings.local.behaviour == "script" and script is None:
        raise ConfigError("local.script is required when local.behaviour = 'script'")
    if script is not None and not script.is_file():
        raise ConfigError(f"local.script = {str(script)!r}: no such file")
    try:
        backend = await start_backend(
            BackendOptions(
                behaviour=settings.local.behaviour,
                script_path=script,
                dialect=settings.local.dialect,
                session_start_delay_s=settings.local.session_start_delay_s,
            ),
            host=settings.local.host,
            port=settings.local.port,
        )
    except (ScriptError, PhraseError) as exc:
        raise ConfigError(f"local.behaviour = {settings.local.behaviour!r}: {exc}") from None
    if resolved.name != "local":
        return ProviderRuntime(remote_endpoint(settings, resolved), resolved, backend)
    return ProviderRuntime(local_endpoint(settings, backend.port), resolved, backend)
