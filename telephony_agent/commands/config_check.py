"""`telephony-agent config check FILE [--route NUMBER]`: validate and show the settings.

Everything `serve` would check before listening is checked here (profiles, tools,
Python tools imported, greeting recordings decoded), with one difference: a missing
API key or webhook secret is a warning, not an error, so a shipped example can be
checked on a machine that has no credentials. `serve` refuses to start without them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from telephony_agent.config import Settings, load_settings
from telephony_agent.config_provider import (
    ResolvedProvider,
    local_endpoint,
    remote_endpoint,
    resolve_provider,
    settings_as_toml,
)
from telephony_agent.errors import ConfigError
from telephony_agent.realtime.providers import Endpoint
from telephony_agent.switchboard import Deployment


def run_config_check(path: Path, routes: Sequence[str] = ()) -> int:
    settings = load_settings(path)
    resolved, endpoint = _provider(settings)
    deployment = _deployment(settings, resolved, endpoint, os.environ)
    print(settings_as_toml(settings, resolved), end="")
    book = deployment.profiles
    names = [p.name for p in book.profiles]
    if book.default.name not in names:
        names.append(f"{book.default.name} (from [agent])")
    print(f"# profiles (first match wins): {', '.join(names)}; default: {book.default.name}")
    tools = sorted(deployment.tools.names())
    print(f"# tools: {', '.join(tools) if tools else 'none beyond the built-ins'}")
    for number in routes:
        print(f"# route: {book.explain(number)}")
    print(f"# {path}: OK")
    return 0


def _provider(settings: Settings) -> tuple[ResolvedProvider, Endpoint]:
    """The provider as `serve` would resolve it; a missing key only warns here."""
    try:
        resolved = resolve_provider(settings)
    except ConfigError as exc:
        _warn(f"{exc} (serve will refuse to start without it)")
        resolved = ResolvedProvider(settings.provider.name or "local", None, None)
    if resolved.name == "local":
        if resolved.notice:
            print(f"# {resolved.notice}")
        return resolved, local_endpoint(settings, 0)
    endpoint = remote_endpoint(settings, resolved)
    print(f"# endpoint: {endpoint.redacted_url()} ({endpoint.dialect})")
    return resolved, endpoint


def _deployment(
    settings: Settings, resolved: ResolvedProvider, endpoint: Endpoint, env: Mapping[str, str]
) -> Deployment:
    """Load profiles and tools as `serve` would; missing secrets are stood in for."""
    environ = dict(env)
    for tool in settings.tools:
        secret_env = tool.secret_env
        if secret_env and not environ.get(secret_env, "").strip():
            _warn(
                f"tools[{tool.name}].secret_env = {secret_env!r}: that environment variable "
                "is not set (serve will refuse to start without it)"
            )
            environ[secret_env] = "placeholder-for-config-check"
    return Deployment.single_provider(settings, endpoint, resolved.name, environ)


def _warn(text: str) -> None:
    print(f"telephony-agent: warning: {text}", file=sys.stderr)
