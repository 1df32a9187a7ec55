"""The one typed settings schema: TOML file, then environment, validated with clear errors.

Why hand-rolled instead of a settings framework: the schema is small, the error
messages must name the key, the bad value and what was expected in one line, and
secrets must never be accepted from the command line or echoed back.

Precedence (lowest to highest): defaults, the TOML file, `TELEPHONY_AGENT_<SECTION>_<KEY>`
environment variables, explicit command-line overrides (non-secret keys only).
"""

from __future__ import annotations

import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from telephony_agent.agent import (
    Profile,
    ProfileDefaults,
    ToolWait,
    parse_profile_tables,
    parse_tool_wait,
)
from telephony_agent.agent.tool_wait import FILLER_AFTER_RANGE, TOOL_TIMEOUT_RANGE
from telephony_agent.agent.values import KeyChecker
from telephony_agent.audio.voicing import local_vad_missing
from telephony_agent.call.backchannel import normalise_word
from telephony_agent.config_sections import (
    DEFAULT_DRAIN_GOODBYE,
    LOG_LEVELS,
    AdmissionSettings,
    AgentSettings,
    Behaviour,
    DialectName,
    HttpSettings,
    LocalSettings,
    LogLevel,
    LogSettings,
    ProviderName,
    ProviderSettings,
    RealtimeSettings,
    RecordsSettings,
    RtpSettings,
    ServerSettings,
    SipSettings,
    TurnsSettings,
    VadSettings,
    WebRtcSettings,
)
from telephony_agent.config_values import coerce
from telephony_agent.errors import ConfigError
from telephony_agent.realtime.providers import GENERIC_KEY_ENV
from telephony_agent.tools.definitions import (
    BUILTIN_TOOL_NAMES,
    ToolDefinition,
    parse_tool_tables,
)
from telephony_agent.trunk.devices import DeviceUser, parse_device_tables
from telephony_agent.trunk.settings import RegistrationSettings, parse_registration_tables

__all__ = [
    "DEFAULT_DRAIN_GOODBYE",
    "ENV_PREFIX",
    "KNOWN_CODECS",
    "LOG_LEVELS",
    "SIP_TRANSPORTS",
    "TABLE_ARRAYS",
    "AdmissionSettings",
    "AgentSettings",
    "Behaviour",
    "DialectName",
    "HttpSettings",
    "LocalSettings",
    "LogLevel",
    "LogSettings",
    "ProviderName",
    "ProviderSettings",
    "RealtimeSettings",
    "RecordsSettings",
    "RtpSettings",
    "ServerSettings",
    "Settings",
    "SipSettings",
    "TurnsSettings",
    "VadSettings",
    "WebRtcSettings",
    "agent_defaults",
    "agent_tool_wait",
    "codec_preference",
    "load_settings",
    "module_levels",
    "parse_host_port",
    "value_range",
]

ENV_PREFIX = "TELEPHONY_AGENT_"


@dataclass(frozen=True)
class Settings:
    """All settings. Sections mirror the TOML tables."""

    provider: ProviderSettings = field(default_factory=ProviderSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    turns: TurnsSettings = field(default_factory=TurnsSettings)
    realtime: RealtimeSettings = field(default_factory=RealtimeSettings)
    local: LocalSettings = field(default_factory=LocalSettings)
    sip: SipSettings = field(default_factory=SipSettings)
    rtp: RtpSettings = field(default_factory=RtpSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    webrtc: WebRtcSettings = field(default_factory=WebRtcSettings)
    records: RecordsSettings = field(default_factory=RecordsSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)
    log: LogSettings = field(default_factory=LogSettings)
    #: `[[profiles]]`, in file order (first match wins); validated with the rest.
    profiles: tuple[Profile, ...] = ()
    #: `[[tools]]`: operator-defined webhook and Python tools.
    tools: tuple[ToolDefinition, ...] = ()
    #: `[[registrations]]`: registrars the agent registers with (SIP trunks, PBXs).
    registrations: tuple[RegistrationSettings, ...] = ()
    #: `[[sip.users]]`: devices that must authenticate their INVITEs (digest).
    sip_users: tuple[DeviceUser, ...] = ()


#: Settings fields that are arrays of tables, not `[section]` tables.
TABLE_ARRAYS = frozenset({"profiles", "tools", "registrations", "sip_users"})


def _sections() -> list[str]:
    return [f.name for f in fields(Settings) if f.name not in TABLE_ARRAYS]


#: Keys that would hold a secret; refused with a pointer to the right place.
_SECRET_KEYS = frozenset({"api_key", "key", "token", "password", "secret"})

_RANGES: dict[str, tuple[float, float]] = {
    "agent.output_rate": (8000, 48000),
    "provider.max_session_s": (0.0, 86400.0),
    "vad.threshold": (0.0, 1.0),
    "vad.prefix_padding_ms": (0, 5000),
    "vad.silence_duration_ms": (100, 10000),
    "vad.idle_timeout_ms": (1000, 3_600_000),
    "turns.min_speech_ms": (0, 2000),
    "turns.duck_db": (-60.0, 0.0),
    "turns.echo_window_ms": (200, 2000),
    "turns.backchannel_max_ms": (0, 5000),
    "realtime.chunk_ms": (10, 1000),
    "realtime.ready_timeout_s": (0.1, 120.0),
    "realtime.max_reconnects": (0, 100),
    "realtime.playout_preroll_ms": (0, 1000),
    "local.port": (0, 65535),
    "local.session_start_delay_s": (0.0, 60.0),
    "agent.max_duration_s": (1.0, 86400.0),
    "agent.dtmf_inter_digit_s": (0.2, 30.0),
    "agent.dtmf_max_digits": (1, 64),
    "agent.idle_reprompt_s": (0.0, 3600.0),
    "agent.idle_max_reprompts": (0, 10),
    "agent.filler_after_s": FILLER_AFTER_RANGE,
    "agent.tool_timeout_s": TOOL_TIMEOUT_RANGE,
    "sip.max_calls": (1, 100_000),
    "sip.retry_after_s": (1, 86400),
    "sip.answer_timeout_s": (0.5, 120.0),
    "sip.t1_ms": (10, 5000),
    "sip.tls_port": (0, 65535),
    "sip.ring_timeout_s": (1.0, 600.0),
    "sip.max_outbound_cps": (0.1, 1000.0),
    "sip.auth_max_failures": (1, 1000),
    "sip.auth_ban_s": (1.0, 86400.0),
    "sip.max_pending_per_source": (1, 100_000),
    "sip.max_pending_calls": (1, 100_000),
    "sip.invite_rate_per_source": (0.1, 100_000.0),
    "sip.socket_buffer_bytes": (65_536, 1 << 28),
    "rtp.socket_buffer_bytes": (16_384, 1 << 26),
    "rtp.port_min": (1024, 65534),
    "rtp.port_max": (1025, 65535),
    "rtp.inactivity_timeout_s": (1.0, 3600.0),
    "webrtc.ice_timeout_s": (0.5, 60.0),
    "records.retention_days": (1, 36500),
    "records.queue_size": (100, 1_000_000),
    "server.drain_timeout_s": (0.0, 86400.0),
    "admission.max_clock_lateness_ms": (0.5, 1000.0),
    "admission.max_cpu": (0.01, 64.0),
    "admission.lateness_min_cpu": (0.0, 64.0),
    "admission.resume_below": (0.1, 1.0),
    "admission.enter_after_s": (0.0, 600.0),
    "admission.resume_after_s": (0.0, 600.0),
    "admission.cpu_per_call": (0.0001, 1.0),
    "admission.retry_after_s": (1, 86400),
}

KNOWN_CODECS = ("opus", "G722", "PCMA", "PCMU")


def _section_types(section_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(section_cls, include_extras=False)


def _apply(settings: Settings, data: Mapping[str, Any], *, from_env: bool, origin: str) -> Settings:
    sections = {f.name: f for f in fields(Settings) if f.name not in TABLE_ARRAYS}
    updated: dict[str, Any] = {}
    for section_name, section_values in data.items():
        if section_name not in sections:
            hint = get_close_matches(section_name, list(sections), n=1)
            extra = f" (did you mean [{hint[0]}]?)" if hint else ""
            raise ConfigError(f"{origin}: unknown section [{section_name}]{extra}")
        if not isinstance(section_values, Mapping):
            raise ConfigError(f"{origin}: [{section_name}] must be a table")
        current = updated.get(section_name, getattr(settings, section_name))
        assert is_dataclass(current)
        types_by_key = _section_types(type(current))
        changes: dict[str, Any] = {}
        for key, value in section_values.items():
            full = f"{section_name}.{key}"
            if key in _SECRET_KEYS:
                raise ConfigError(
                    f"{origin}: {full} is a secret and is never read from here: set "
                    f"{GENERIC_KEY_ENV} (or the provider's key variable) or provider.api_key_file"
                )
            if key not in types_by_key:
                hint = get_close_matches(key, list(types_by_key), n=1)
                extra = f" (did you mean {section_name}.{hint[0]}?)" if hint else ""
                raise ConfigError(f"{origin}: unknown key {full}{extra}")
            changes[key] = coerce(full, value, types_by_key[key], from_env=from_env, ranges=_RANGES)
        updated[section_name] = replace(current, **changes)  # type: ignore[type-var]
    return replace(settings, **updated)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {}
    section_names = _sections()
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        for section in section_names:
            if rest.startswith(section + "_"):
                result.setdefault(section, {})[rest[len(section) + 1 :]] = value
                break
    return result


def load_settings(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Defaults → TOML file → environment → command-line overrides, all validated."""
    env = os.environ if environ is None else environ
    settings = Settings()
    tables: dict[str, Any] = {}
    if path is not None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except RecursionError:  # tomllib recurses into nested arrays and inline tables
            raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
        arrays = TABLE_ARRAYS - {"sip_users"}  # written as [[sip.users]]
        tables = {key: data.pop(key) for key in list(data) if key in arrays}
        sip_table = data.get("sip")
        if isinstance(sip_table, dict) and "users" in sip_table:
            tables["sip_users"] = sip_table.pop("users")
        settings = _apply(settings, data, from_env=False, origin=str(path))
    settings = _apply(settings, _env_overrides(env), from_env=True, origin="environment")
    if overrides:
        settings = _apply(settings, overrides, from_env=False, origin="command line")
    settings = _with_agent_recordings(
        settings, path.parent if path is not None else Path.cwd(), str(path) if path else ""
    )
    if path is not None:
        settings = _with_tables(settings, tables, base_dir=path.parent, origin=str(path))
    _check_consistency(settings)
    return settings


def _with_tables(
    settings: Settings, tables: Mapping[str, Any], *, base_dir: Path, origin: str
) -> Settings:
    """`[[tools]]` then `[[profiles]]` (which name tools and inherit `[agent]`)."""
    tools: tuple[ToolDefinition, ...] = ()
    if "tools" in tables:
        tools = parse_tool_tables(tables["tools"], base_dir=base_dir, origin=origin)
    profiles: tuple[Profile, ...] = ()
    if "profiles" in tables:
        profiles = parse_profile_tables(
            tables["profiles"],
            defaults=agent_defaults(settings.agent),
            known_tools=(*BUILTIN_TOOL_NAMES, *(t.name for t in tools)),
            base_dir=base_dir,
            origin=origin,
        )
    registrations: tuple[RegistrationSettings, ...] = ()
    if "registrations" in tables:
        registrations = parse_registration_tables(
            tables["registrations"],
            base_dir=base_dir,
            origin=origin,
            known_profiles=[p.name for p in profiles],
        )
    sip_users: tuple[DeviceUser, ...] = ()
    if "sip_users" in tables:
        sip_users = parse_device_tables(tables["sip_users"], base_dir=base_dir, origin=origin)
    return replace(
        settings,
        tools=tools,
        profiles=profiles,
        registrations=registrations,
        sip_users=sip_users,
    )


def agent_tool_wait(agent: AgentSettings, base_dir: Path, origin: str = "") -> ToolWait:
    """`[agent]`'s tool-wait keys, checked as a profile's are; relative recordings start
    at `base_dir`."""
    table: dict[str, object] = {
        "filler_after_s": agent.filler_after_s,
        "tool_timeout_s": agent.tool_timeout_s,
        "filler_instructions": agent.filler_instructions,
    }
    if agent.filler != "none":
        table["filler"] = agent.filler
    if agent.filler_audio is not None:
        table["filler_audio"] = agent.filler_audio
    if agent.hold_audio is not None:
        table["hold_audio"] = agent.hold_audio
    prefix = f"{origin}: agent." if origin else "agent."
    return parse_tool_wait(KeyChecker(prefix), table, ToolWait(), base_dir)


def _with_agent_recordings(settings: Settings, base_dir: Path, origin: str) -> Settings:
    """Check `[agent]`'s filler or hold recording now and keep its absolute path, so
    profiles inherit a file that exists wherever the service is started from."""
    wait = agent_tool_wait(settings.agent, base_dir, origin)
    if wait.audio is None:
        return settings
    if wait.feedback == "recording":
        agent = replace(settings.agent, filler_audio=str(wait.audio))
    else:
        agent = replace(settings.agent, hold_audio=str(wait.audio))
    return replace(settings, agent=agent)


def agent_defaults(agent: AgentSettings) -> ProfileDefaults:
    """What every profile inherits from `[agent]` (and the default profile is, if none is)."""
    return ProfileDefaults(
        instructions=agent.instructions,
        voice=agent.voice,
        greeting=agent.greeting,
        max_duration_s=agent.max_duration_s,
        dtmf_inter_digit_s=agent.dtmf_inter_digit_s,
        dtmf_max_digits=agent.dtmf_max_digits,
        dtmf_terminator=agent.dtmf_terminator,
        dtmf_message=agent.dtmf_message,
        tool_wait=agent_tool_wait(agent, Path.cwd()),
    )


def value_range(key: str) -> tuple[float, float] | None:
    """The range a numeric setting (`section.key`) must lie in, or None if unbounded:
    for command-line flags that set a key, so they check it as the settings file would."""
    return _RANGES.get(key)


def parse_host_port(key: str, value: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`) from a setting, with an error naming the key."""
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{key} = {value!r}: expected HOST:PORT, e.g. 0.0.0.0:5060")
    return host, int(port_text)


def codec_preference(settings: Settings) -> tuple[str, ...]:
    """The configured codec order, names normalised to the SDP spelling."""
    by_lower = {name.lower(): name for name in KNOWN_CODECS}
    names = [part.strip() for part in settings.sip.codecs.split(",") if part.strip()]
    result: list[str] = []
    for name in names:
        known = by_lower.get(name.lower())
        if known is None:
            raise ConfigError(
                f"sip.codecs = {settings.sip.codecs!r}: unknown codec {name!r}, "
                f"expected a comma-separated list of {', '.join(KNOWN_CODECS)}"
            )
        if known not in result:
            result.append(known)
    if not result:
        raise ConfigError(f"sip.codecs = {settings.sip.codecs!r}: expected at least one codec")
    return tuple(result)


SIP_TRANSPORTS = ("udp", "tcp", "tls")


def _check_transports(sip: SipSettings) -> None:
    parts = sip.transports.lower().split("+")
    if not parts or any(p not in SIP_TRANSPORTS for p in parts) or len(set(parts)) != len(parts):
        raise ConfigError(
            f"sip.transports = {sip.transports!r}: expected udp, tcp and/or tls joined with '+', "
            "e.g. 'udp+tcp+tls'"
        )
    if not sip.auth_algorithms or any(a not in ("SHA-256", "MD5") for a in sip.auth_algorithms):
        raise ConfigError(
            f"sip.auth_algorithms = {list(sip.auth_algorithms)!r}: expected a list of "
            "'SHA-256' and/or 'MD5'"
        )
    if "tls" in parts and not (sip.tls_certificate and sip.tls_key):
        missing = "sip.tls_certificate" if not sip.tls_certificate else "sip.tls_key"
        raise ConfigError(
            f"{missing} is not set: expected a PEM file, because sip.transports includes tls"
        )


def _check_consistency(settings: Settings) -> None:
    """Rules that span keys or need parsing beyond a type check."""
    parse_host_port("sip.listen", settings.sip.listen)
    _check_transports(settings.sip)
    parse_host_port("http.listen", settings.http.listen)
    codec_preference(settings)
    rtp = settings.rtp
    if rtp.port_max - rtp.port_min < 3:
        raise ConfigError(
            f"rtp.port_min = {rtp.port_min}, rtp.port_max = {rtp.port_max}: expected a range "
            "of at least 4 ports (one even/odd pair per call)"
        )
    _check_database_url(settings.records.database)
    module_levels(settings.log.levels)
    http = settings.http
    if (http.tls_certificate is None) != (http.tls_key is None):
        given = "http.tls_certificate" if http.tls_certificate else "http.tls_key"
        raise ConfigError(
            f"{given} is set alone: expected both http.tls_certificate and http.tls_key "
            "(or neither, for plain HTTP)"
        )
    _check_turns(settings.turns)
    _check_turn_detection(settings)
    if settings.admission.refuse_with not in (486, 503):
        raise ConfigError(
            f"admission.refuse_with = {settings.admission.refuse_with!r}: expected 503 "
            "(Service Unavailable, with Retry-After) or 486 (Busy Here)"
        )


def module_levels(text: str) -> dict[str, str]:
    """`log.levels` as {logger name: level}: "telephony_agent.sip=debug, aiortc=warning"."""
    result: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, level = (piece.strip() for piece in part.partition("="))
        if not sep or not name or level.lower() not in LOG_LEVELS:
            raise ConfigError(
                f"log.levels = {text!r}: {part.strip()!r} is not MODULE=LEVEL, expected "
                f"entries like telephony_agent.sip=debug with a level of {', '.join(LOG_LEVELS)}"
            )
        result[name] = level.lower()
    return result


def _check_turns(turns: TurnsSettings) -> None:
    for word in turns.backchannels.split(","):
        if word.strip() and not normalise_word(word):
            raise ConfigError(
                f"turns.backchannels = {turns.backchannels!r}: {word.strip()!r} has no "
                "letters, expected comma-separated words"
            )
    missing = local_vad_missing(turns.local_vad)
    if missing is not None:
        raise ConfigError(f"turns.local_vad = {turns.local_vad!r}: expected {missing} installed")


def _check_turn_detection(settings: Settings) -> None:
    """Semantic VAD is OpenAI's: it has no idle timeout, and Yandex does not document it."""
    vad = settings.vad
    if vad.type != "semantic_vad":
        return
    if vad.idle_timeout_ms is not None:
        raise ConfigError(
            f"vad.idle_timeout_ms = {vad.idle_timeout_ms}: expected it unset with "
            "vad.type = 'semantic_vad' (only server_vad has an idle timeout)"
        )
    p = settings.provider
    if p.dialect == "yandex" or (p.name or "").startswith("yandex"):
        raise ConfigError(
            "vad.type = 'semantic_vad': expected 'server_vad' for Yandex, which documents "
            "server_vad only"
        )


def _check_database_url(url: str | None) -> None:
    """A records URL names its scheme, and never carries a password (logs, `config check`
    and process listings would show it): PGPASSWORD or ~/.pgpass hold that."""
    if url is None:
        return
    # Imported here: only a configured URL needs the records package's URL rules.
    from telephony_agent.records.urls import (
        POSTGRES_SCHEMES,
        SQLITE_PREFIX,
        redact_url,
        url_password,
    )

    scheme = url.partition("://")[0]
    if not url.startswith(SQLITE_PREFIX) and scheme not in POSTGRES_SCHEMES:
        raise ConfigError(
            f"records.database = {redact_url(url)!r}: expected sqlite:///PATH or "
            "postgresql://USER@HOST/DB"
        )
    if url_password(url) is not None:
        raise ConfigError(
            f"records.database = {redact_url(url)!r}: the URL holds a password; remove it "
            "and set PGPASSWORD (or use ~/.pgpass): secrets are never read from the "
            "settings file"
        )
