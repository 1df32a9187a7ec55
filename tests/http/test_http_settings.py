"""Where the HTTP side gets its secrets: the bearer token and the TURN credential."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from telephony_agent.config import Settings, load_settings
from telephony_agent.errors import ConfigError
from telephony_agent.logs import redact_text
from telephony_agent.server.http_app import ice_servers_from_settings, resolve_http_token

TOKEN = "tok-9f8e7d6c5b4a"


def _settings(**sections: dict[str, Any]) -> Settings:
    return load_settings(None, environ={}, overrides=sections)


def test_no_token_configured_means_none() -> None:
    assert resolve_http_token(_settings(), environ={"HTTP_TOKEN": TOKEN}) is None


def test_token_from_the_named_variable_is_registered_for_redaction() -> None:
    settings = _settings(http={"token_env": "HTTP_TOKEN"})
    assert resolve_http_token(settings, environ={"HTTP_TOKEN": f" {TOKEN}\n"}) == TOKEN
    assert TOKEN not in redact_text(f"header was {TOKEN}")


def test_token_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    assert resolve_http_token(_settings(http={"token_file": str(path)}), environ={}) == TOKEN


@pytest.mark.parametrize(
    ("http", "environ", "phrase"),
    [
        ({"token_env": "HTTP_TOKEN"}, {}, "not set or empty"),
        ({"token_env": "HTTP_TOKEN"}, {"HTTP_TOKEN": "  "}, "not set or empty"),
    ],
)
def test_a_configured_but_missing_token_refuses_to_start(
    http: dict[str, str], environ: dict[str, str], phrase: str
) -> None:
    with pytest.raises(ConfigError, match=phrase):
        resolve_http_token(_settings(http=http), environ=environ)


def test_a_missing_or_empty_token_file_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "token"
    with pytest.raises(ConfigError, match="cannot read it"):
        resolve_http_token(_settings(http={"token_file": str(path)}), environ={})
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty"):
        resolve_http_token(_settings(http={"token_file": str(path)}), environ={})


def test_no_ice_servers_by_default() -> None:
    assert ice_servers_from_settings(_settings(), environ={}) == ()


def test_turn_needs_a_username_and_credential() -> None:
    settings = _settings(webrtc={"ice_servers": "turn:turn.example.org", "turn_username": "a"})
    with pytest.raises(ConfigError, match="turn_credential_env"):
        ice_servers_from_settings(settings, environ={})


def test_ice_server_urls_must_be_stun_or_turn() -> None:
    settings = _settings(webrtc={"ice_servers": "stun:ok.example.org,https://x.example.org"})
    with pytest.raises(ConfigError, match=re.escape("https://x.example.org")):
        ice_servers_from_settings(settings, environ={})
