"""Providers are data: a URL template, an auth header and a dialect.

Adding a vendor means adding a preset here, never a new code path in the client.
The API key is read by `config` (environment or secrets file) and only ever
travels inside `Endpoint.headers`; nothing here logs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from telephony_agent.realtime.dialect import Dialect

#: Query parameters that may carry a credential and must never be logged.
_SECRET_QUERY_KEYS = frozenset({"key", "api_key", "apikey", "token", "access_token", "secret"})


@dataclass(frozen=True)
class Endpoint:
    """Where and how to open one Realtime session."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    dialect: Dialect = Dialect.GA
    name: str = "custom"
    #: The model the URL names (for logs and records).
    model: str = ""
    #: The same provider with the next models of `[provider] model`, tried in order when
    #: the provider says this model does not exist.
    alternates: tuple[Endpoint, ...] = ()

    def redacted_url(self) -> str:
        """The URL with credential-looking query values masked, safe for logs and errors."""
        parts = urlsplit(self.url)
        query = [
            (k, "***" if k.lower() in _SECRET_QUERY_KEYS else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
        return urlunsplit(parts._replace(query=urlencode(query, safe="/:")))

    def __repr__(self) -> str:
        # The default dataclass repr would print the Authorization header.
        return f"Endpoint(name={self.name!r}, url={self.redacted_url()!r}, dialect={self.dialect})"


@dataclass(frozen=True)
class ProviderPreset:
    """A named provider: URL template, how the key is presented, and the dialect."""

    name: str
    url_template: str
    auth_header: str
    auth_scheme: str
    dialect: Dialect
    default_model: str
    default_voice: str
    key_env: tuple[str, ...]
    needs_folder: bool = False
    #: The provider takes `audio/pcmu` and `audio/pcma` both ways (in the GA dialect), so
    #: `g711_passthrough = "auto"` passes G.711 calls through untouched.
    accepts_g711: bool = False
    #: PCM output rates the provider honours; None: any rate it is asked for.
    pcm_output_rates: tuple[int, ...] | None = None
    #: Input transcription asked for by default, so the caller's side of records has
    #: words; None where the provider transcribes without being asked or cannot.
    default_transcription_model: str | None = None
    #: The session lifetime the provider enforces, less a margin: sessions are rolled
    #: over at a pause before it. None: no limit a call is likely to reach.
    max_session_s: float | None = None


PRESETS: dict[str, ProviderPreset] = {
    "yandex": ProviderPreset(
        name="yandex",
        url_template="wss://ai.api.cloud.yandex.net/v1/realtime?model=gpt://{folder}/{model}",
        auth_header="Authorization",
        auth_scheme="Api-Key",
        dialect=Dialect.YANDEX,
        default_model="speech-realtime-250923",
        default_voice="marina",
        key_env=("YANDEX_API_KEY",),
        needs_folder=True,
        max_session_s=290.0,
    ),
    "yandex-legacy": ProviderPreset(
        name="yandex-legacy",
        url_template=(
            "wss://rest-assistant.api.cloud.yandex.net/v1/realtime/openai"
            "?model=gpt://{folder}/{model}"
        ),
        auth_header="Authorization",
        auth_scheme="api-key",
        dialect=Dialect.YANDEX,
        default_model="speech-realtime-250923",
        default_voice="marina",
        key_env=("YANDEX_API_KEY",),
        needs_folder=True,
        max_session_s=290.0,
    ),
    "openai": ProviderPreset(
        name="openai",
        url_template="wss://api.openai.com/v1/realtime?model={model}",
        auth_header="Authorization",
        auth_scheme="Bearer",
        dialect=Dialect.GA,
        default_model="gpt-realtime",
        default_voice="marin",
        default_transcription_model="gpt-4o-mini-transcribe",
        key_env=("OPENAI_API_KEY",),
        accepts_g711=True,
        pcm_output_rates=(24000,),
    ),
    "custom": ProviderPreset(
        name="custom",
        url_template="{url}",
        auth_header="Authorization",
        auth_scheme="Bearer",
        dialect=Dialect.GA,
        default_model="",
        default_voice="alloy",
        key_env=(),
    ),
    "local": ProviderPreset(
        name="local",
        url_template="ws://{host}:{port}/v1/realtime?model={model}",
        auth_header="Authorization",
        auth_scheme="Bearer",
        dialect=Dialect.GA,
        default_model="local-echo",
        default_voice="local",
        key_env=(),
        accepts_g711=True,
    ),
}

#: Every preset also accepts the project-wide key variable.
GENERIC_KEY_ENV = "TELEPHONY_AGENT_API_KEY"


def build_endpoint(
    preset: ProviderPreset,
    *,
    api_key: str | None,
    model: str | None = None,
    folder: str | None = None,
    url: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    dialect: Dialect | None = None,
    auth_header: str | None = None,
    auth_scheme: str | None = None,
) -> Endpoint:
    """Fill a preset's template. Validation of required values happens in `config`."""
    effective_url = preset.url_template.format(
        folder=folder or "",
        model=model or preset.default_model,
        url=url or "",
        host=host,
        port=port,
    )
    if url and model and "{model}" in effective_url:
        # A custom URL names where the model goes, so a model list works there too.
        effective_url = effective_url.replace("{model}", model)
    headers: dict[str, str] = {}
    if api_key:
        scheme = preset.auth_scheme if auth_scheme is None else auth_scheme
        value = f"{scheme} {api_key}" if scheme else api_key
        headers[auth_header or preset.auth_header] = value
    return Endpoint(
        url=effective_url,
        headers=headers,
        dialect=dialect or preset.dialect,
        name=preset.name,
        model=model or preset.default_model,
    )
