"""Which provider a call talks to, with which key, at which endpoint — from settings.

Why apart from the settings schema: reading the API key (environment or key file),
filling a provider preset's URL template and listing a model list's alternates are
about reaching a provider, not about checking a settings file; `config check` and
`serve` need them, the schema does not. The key never leaves `Endpoint.headers`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from telephony_agent.config import TABLE_ARRAYS, Settings
from telephony_agent.errors import ConfigError
from telephony_agent.realtime.dialect import Dialect
from telephony_agent.realtime.providers import GENERIC_KEY_ENV, PRESETS, Endpoint, build_endpoint

__all__ = [
    "ResolvedProvider",
    "effective_voice",
    "local_endpoint",
    "model_list",
    "remote_endpoint",
    "resolve_provider",
    "settings_as_toml",
]


@dataclass(frozen=True)
class ResolvedProvider:
    """The provider actually used, with its key (if any) and why it was chosen."""

    name: str
    api_key: str | None
    notice: str | None

    def __repr__(self) -> str:
        return f"ResolvedProvider(name={self.name!r}, api_key={'***' if self.api_key else None})"


def _read_key(settings: Settings, env: Mapping[str, str]) -> tuple[str | None, str]:
    """Find the API key: an explicit env var, the secrets file, then well-known variables."""
    p = settings.provider
    if p.api_key_env:
        value = env.get(p.api_key_env, "").strip()
        return (value or None), p.api_key_env
    if p.api_key_file:
        try:
            value = Path(p.api_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"provider.api_key_file = {p.api_key_file!r}: cannot read it ({exc.strerror})"
            ) from None
        if not value:
            raise ConfigError(f"provider.api_key_file = {p.api_key_file!r}: the file is empty")
        return value, "provider.api_key_file"
    names: list[str] = [GENERIC_KEY_ENV]
    candidates = [p.name] if p.name else ["yandex", "openai"]
    for candidate in candidates:
        names.extend(PRESETS[candidate].key_env)
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value, name
    return None, " or ".join(dict.fromkeys(names))


def resolve_provider(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> ResolvedProvider:
    """Decide which provider runs: explicit name, else whichever key exists, else local."""
    env = os.environ if environ is None else environ
    p = settings.provider
    if p.name == "local":
        return ResolvedProvider("local", None, None)
    key, source = _read_key(settings, env)
    if p.name is None:
        if key is None:
            return ResolvedProvider(
                "local",
                None,
                "no API key configured: using the built-in local backend "
                f"({settings.local.behaviour} behaviour)",
            )
        if source == "OPENAI_API_KEY":
            name = "openai"
        elif p.url:
            name = "custom"
        else:
            name = "yandex"
        return ResolvedProvider(name, key, None)
    if key is None and p.name != "custom":
        raise ConfigError(
            f"provider.name = {p.name!r} needs an API key: set {source} (or provider.api_key_file)"
        )
    return ResolvedProvider(p.name, key, None)


def remote_endpoint(settings: Settings, resolved: ResolvedProvider) -> Endpoint:
    """Build the endpoint of a non-local provider, checking what its template needs."""
    p = settings.provider
    preset = PRESETS[resolved.name]
    if preset.needs_folder and not p.folder:
        raise ConfigError(
            f"provider.folder is required for provider {resolved.name!r}: expected your "
            "cloud folder id (e.g. b1g...)"
        )
    if resolved.name == "custom" and not p.url:
        raise ConfigError(
            "provider.url is required for provider 'custom': expected a ws:// or wss:// URL"
        )
    if p.url and not p.url.startswith(("ws://", "wss://")):
        raise ConfigError(f"provider.url = {p.url!r}: expected a ws:// or wss:// URL")
    if p.url and "{model}" in p.url and not p.model:
        raise ConfigError(
            f"provider.url = {p.url!r}: it names {{model}}, expected provider.model to be set"
        )
    return _with_alternates(
        [
            build_endpoint(
                preset,
                api_key=resolved.api_key,
                model=model,
                folder=p.folder,
                url=p.url,
                dialect=Dialect(p.dialect) if p.dialect else None,
                auth_header=p.auth_header,
                auth_scheme=p.auth_scheme,
            )
            for model in model_list(p.model)
        ]
    )


def local_endpoint(
    settings: Settings, port: int, model: str | tuple[str, ...] | None = None
) -> Endpoint:
    """The endpoint of an in-process or separately started local backend; it speaks
    `[local] dialect` unless `[provider] dialect` says otherwise."""
    dialect = Dialect(settings.provider.dialect or settings.local.dialect)
    models = model_list(model if model is not None else settings.provider.model)
    return _with_alternates(
        [
            build_endpoint(
                PRESETS["local"],
                api_key=None,
                model=name,
                host=settings.local.host,
                port=port,
                dialect=dialect,
            )
            for name in models
        ]
    )


def model_list(model: str | tuple[str, ...] | None) -> list[str | None]:
    """`[provider] model` as the models to try in order (None: the preset's default)."""
    if model is None:
        return [None]
    return [model] if isinstance(model, str) else list(model)


def _with_alternates(endpoints: list[Endpoint]) -> Endpoint:
    """The first endpoint, carrying the others as the models to try after it."""
    return replace(endpoints[0], alternates=tuple(endpoints[1:]))


def effective_voice(settings: Settings, provider_name: str) -> str:
    return settings.agent.voice or PRESETS[provider_name].default_voice


def settings_as_toml(settings: Settings, resolved: ResolvedProvider) -> str:
    """Render the effective settings; the key is shown only as masked presence."""
    lines: list[str] = []
    for section in fields(Settings):
        if section.name in TABLE_ARRAYS:
            continue
        lines.append(f"[{section.name}]")
        value = getattr(settings, section.name)
        for f in fields(value):
            v = getattr(value, f.name)
            if v is None:
                lines.append(f"# {f.name} is not set")
                continue
            lines.append(f"{f.name} = {_toml_value(v)}")
        if section.name == "provider":
            lines.append(f"# effective provider: {resolved.name}")
            lines.append(f"# api key: {'*** (set)' if resolved.api_key else 'not set'}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        pairs = ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + pairs + "}"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'
