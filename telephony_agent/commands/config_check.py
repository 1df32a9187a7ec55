"""`telephony-agent config check FILE`: validate and show the effective settings."""

from __future__ import annotations

from pathlib import Path

from telephony_agent.config import load_settings, resolve_provider, settings_as_toml


def run_config_check(path: Path) -> int:
    settings = load_settings(path)
    resolved = resolve_provider(settings)
    if resolved.name != "local":
        from telephony_agent.config import remote_endpoint

        endpoint = remote_endpoint(settings, resolved)
        print(f"# endpoint: {endpoint.redacted_url()} ({endpoint.dialect})")
    elif resolved.notice:
        print(f"# {resolved.notice}")
    print(settings_as_toml(settings, resolved), end="")
    print(f"# {path}: OK")
    return 0
