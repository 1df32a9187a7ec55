"""The one typed settings schema: TOML file, then environment, validated with clear errors.

Why hand-rolled instead of a settings framework: the schema is small, the error
messages must name the key, the bad value and what was expected in one line, and
secrets must never be accepted from the command line or echoed back.

Precedence (lowest to highest): defaults, the TOML file, `TELEPHONY_AGENT_<SECTION>_<KEY>`
environment variables, explicit command-line overrides (non-secret keys only).
"""

from __future__ import annotations

import json
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Literal

from telephony_agent.agent import (
    DEFAULT_DTMF_MESSAGE,
    DEFAULT_FILLER_AFTER_S,
    DEFAULT_FILLER_INSTRUCTIONS,
    DEFAULT_TOOL_TIMEOUT_S,
    Profile,
    ProfileDefaults,
    ToolWait,
    parse_profile_tables,
    parse_tool_wait,
)
from telephony_agent.agent.tool_wait import FILLER_AFTER_RANGE, TOOL_TIMEOUT_RANGE
from telephony_agent.agent.values import KeyChecker
from telephony_agent.audio.voicing import LocalVad, local_vad_missing
from telephony_agent.call.backchannel import DEFAULT_BACKCHANNELS, normalise_word
from telephony_agent.call.idle import DEFAULT_GOODBYE, DEFAULT_REPROMPT
from telephony_agent.config_values import coerce
from telephony_agent.errors import ConfigError
from telephony_agent.realtime.dialect import Dialect
from telephony_agent.realtime.providers import GENERIC_KEY_ENV, PRESETS, Endpoint, build_endpoint
from telephony_agent.tools.definitions import (
    BUILTIN_TOOL_NAMES,
    ToolDefinition,
    parse_tool_tables,
)
from telephony_agent.trunk.devices import DeviceUser, parse_device_tables
from telephony_agent.trunk.settings import RegistrationSettings, parse_registration_tables

ENV_PREFIX = "TELEPHONY_AGENT_"

#: What the model is asked to say when a drain runs out of time (`[server]` may change it).
DEFAULT_DRAIN_GOODBYE = (
    "The service is restarting: say briefly that you have to end the call now, "
    "that the caller may call again in a minute, and goodbye."
)

ProviderName = Literal["yandex", "yandex-legacy", "openai", "custom", "local"]
Behaviour = Literal["echo", "tone", "script", "booking"]
DialectName = Literal["ga", "beta", "yandex"]


@dataclass(frozen=True)
class ProviderSettings:
    """Which Realtime service to talk to. The key itself is never stored in the file."""

    name: ProviderName | None = None
    #: One model, or a list tried in order at session start: a model the provider says
    #: does not exist is never retried, the next one is tried at once.
    model: tuple[str, ...] | str | None = None
    folder: str | None = None
    url: str | None = None
    dialect: DialectName | None = None
    auth_header: str | None = None
    auth_scheme: str | None = None
    api_key_env: str | None = None
    api_key_file: str | None = None
    #: Seconds a provider session may live; it is replaced at a pause before then.
    #: None: the provider's known limit (290 for Yandex, none otherwise); 0: never.
    max_session_s: float | None = None
    #: G.711 calls hand the caller's bytes to the model and the model's G.711 to the
    #: caller, with no decode, resampling or encode. "auto": where the provider accepts
    #: G.711 (OpenAI, the local backend in the GA dialect); "on": always try (a refusal
    #: falls back to PCM for that call); "off": never.
    g711_passthrough: Literal["auto", "on", "off"] = "auto"
    #: Merged deeply into every `session.update` last: provider options this project
    #: does not model (e.g. a new OpenAI field, Yandex `audio.output.role`).
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentSettings:
    """What the agent says and how it sounds."""

    instructions: str = (
        "You are a friendly phone assistant. Keep answers short and speak naturally."
    )
    voice: str | None = None
    greeting: str | None = None
    transcription_model: str | None = None
    #: Rate of the model's PCM audio, or "leg": the call leg's own rate (8, 16 or 48 kHz),
    #: so nothing is resampled on the way out where the provider honours it (Yandex).
    #: What `session.updated` reports is followed either way.
    output_rate: int | Literal["leg"] = 24000
    #: Input noise reduction (OpenAI): "near_field" (a handset or headset) or
    #: "far_field" (a speakerphone); not set: none. Never sent to Yandex.
    noise_reduction: Literal["near_field", "far_field"] | None = None
    #: The agent says goodbye and hangs up after this many seconds of call (none: no limit).
    max_duration_s: float | None = None
    #: Keypad entry: digits are collected until the terminator, `dtmf_max_digits`, or this
    #: many seconds without a digit, then given to the model as one user message.
    dtmf_inter_digit_s: float = 3.0
    dtmf_max_digits: int = 20
    dtmf_terminator: Literal["#", "*", ""] = "#"
    #: The user message; `{digits}` becomes the digits separated by spaces ("4 5 1 2 #").
    dtmf_message: str = DEFAULT_DTMF_MESSAGE
    #: Seconds of silence (nobody speaking) before the agent asks if the caller is still
    #: there; after `idle_max_reprompts` such prompts it says goodbye and hangs up
    #: (end reason `idle`). 0 turns it off.
    idle_reprompt_s: float = 8.0
    idle_max_reprompts: int = 2
    idle_reprompt_instructions: str = DEFAULT_REPROMPT
    idle_goodbye_instructions: str = DEFAULT_GOODBYE
    #: While a tool runs and the line has been quiet `filler_after_s`, the caller hears
    #: one of: `filler = "model"` (a short acknowledgement asked of the model), a
    #: `filler_audio` recording played once, or `hold_audio` (a recording, or "tone")
    #: looped until the answer. Past `tool_timeout_s` the model is told the tool timed out.
    filler: Literal["none", "model"] = "none"
    filler_audio: str | None = None
    hold_audio: str | None = None
    filler_after_s: float = DEFAULT_FILLER_AFTER_S
    filler_instructions: str = DEFAULT_FILLER_INSTRUCTIONS
    tool_timeout_s: float = DEFAULT_TOOL_TIMEOUT_S


@dataclass(frozen=True)
class VadSettings:
    """Server-side turn detection; `enabled = false` means manual turns."""

    enabled: bool = True
    #: "server_vad" (silence ends a turn) or OpenAI's "semantic_vad" (the words do).
    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    #: How soon semantic VAD ends a turn.
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    idle_timeout_ms: int | None = None
    interrupt_response: bool = True


@dataclass(frozen=True)
class TurnsSettings:
    """Barge-in: when the caller's speech over the agent interrupts it (docs/turn-taking.md).

    With `min_speech_ms = 0` and `echo_guard = false` every `speech_started` cuts the
    agent at once, and the server interrupts and answers by itself (`[vad]`)."""

    min_speech_ms: int = 250
    duck_db: float = -12.0
    echo_guard: bool = True
    echo_window_ms: int = 600
    #: Comma-separated words that never interrupt on their own ("" for none).
    backchannels: str = DEFAULT_BACKCHANNELS
    backchannel_max_ms: int = 600
    local_vad: LocalVad = "energy"


@dataclass(frozen=True)
class RealtimeSettings:
    """Client knobs for the websocket session."""

    chunk_ms: int = 20
    ready_timeout_s: float = 5.0
    max_reconnects: int = 5
    #: Agent speech waits until this much is queued before it starts playing, so a
    #: provider streaming near real time cannot make it stutter (0 disables).
    playout_preroll_ms: int = 80


@dataclass(frozen=True)
class LocalSettings:
    """The built-in local backend, used when no key is configured."""

    behaviour: Behaviour = "echo"
    script: str | None = None
    #: The event dialect the backend speaks; "yandex" behaves as Yandex documents it.
    dialect: DialectName = "ga"
    host: str = "127.0.0.1"
    port: int = 0
    #: Simulate a slow provider: seconds before each session starts (tests ringing/CANCEL).
    session_start_delay_s: float = 0.0


@dataclass(frozen=True)
class SipSettings:
    """The SIP side: where we listen, what we advertise, how many calls we take."""

    listen: str = "0.0.0.0:5060"
    #: Any of udp, tcp and tls joined with "+"; UDP and TCP share `listen`'s port.
    transports: str = "udp+tcp"
    #: Port for SIP over TLS on `listen`'s address (0: any free port).
    tls_port: int = 5061
    tls_certificate: str | None = None
    tls_key: str | None = None
    #: Ask TLS clients for a certificate (trunks rarely have one: off by default).
    tls_verify_client: bool = False
    #: Verify the certificates of TLS servers we connect to (registrars, outbound calls).
    tls_verify_server: bool = True
    #: CA certificates (PEM) for either verification; the system's store when unset.
    tls_ca_file: str | None = None
    #: Outbound calls: how long the callee may ring before we CANCEL.
    ring_timeout_s: float = 30.0
    #: Outbound calls started per second at most (POST /calls, `dial`).
    max_outbound_cps: float = 5.0
    #: Networks (CIDR) that may send requests; empty: anyone (a warning at start).
    allow: tuple[str, ...] = ()
    #: What a request from outside `allow` gets: silence ("drop") or "403".
    deny_action: Literal["drop", "403"] = "drop"
    #: Realm of the digest challenge for `[[sip.users]]` devices.
    auth_realm: str = "telephony-agent"
    #: Challenges offered, in order; some devices only read the first (put MD5 first).
    auth_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    #: Failed authentications from one address within a minute before it is banned.
    auth_max_failures: int = 5
    auth_ban_s: float = 600.0
    #: Address put in Contact and SDP when the agent sits behind NAT.
    public_address: str | None = None
    max_calls: int = 100
    #: Over capacity: "busy" answers 486 Busy Here, "unavailable" 503 with Retry-After.
    over_capacity: Literal["busy", "unavailable"] = "busy"
    retry_after_s: int = 30
    #: Codec preference, best first, comma separated (opus, G722, PCMA, PCMU).
    codecs: str = "opus,G722,PCMA,PCMU"
    #: Seconds between 180 Ringing and giving up on the Realtime session (then 503).
    answer_timeout_s: float = 10.0
    #: RFC 3261 T1 in milliseconds (500 on the open internet; lower on a LAN).
    t1_ms: int = 500
    user_agent: str = "telephony-agent"
    #: Calls from one address that ring or wait for their ACK at once; more get 503.
    max_pending_per_source: int = 20
    #: The same, from all addresses together (keep it below max_calls).
    max_pending_calls: int = 50
    #: New INVITEs per second from one address (bursts of twice as many); more are dropped.
    invite_rate_per_source: float = 20.0
    #: Receive and send buffer of the SIP UDP socket, in bytes (see docs/security.md).
    socket_buffer_bytes: int = 8 * 1024 * 1024


@dataclass(frozen=True)
class RtpSettings:
    """Media sockets for plain RTP legs."""

    port_min: int = 20000
    port_max: int = 20999
    #: No RTP for this long ends the call with BYE (not while the caller holds).
    inactivity_timeout_s: float = 30.0
    #: SDES-SRTP: "off", "optional" (answer RTP/SAVP offers with SRTP), "required".
    srtp: Literal["off", "optional", "required"] = "optional"
    #: Receive and send buffer of each RTP and RTCP socket, in bytes.
    socket_buffer_bytes: int = 512 * 1024


@dataclass(frozen=True)
class HttpSettings:
    """The HTTP side: health, the browser demo page, WebRTC and WHIP signalling."""

    listen: str = "127.0.0.1:8080"
    #: Environment variable holding a bearer token required on signalling requests
    #: (the token itself never goes in the file). None: no token required.
    token_env: str | None = None
    #: Or a file holding the token (a mounted secret).
    token_file: str | None = None
    #: PEM certificate chain and private key: serve HTTPS instead of HTTP (a browser on
    #: another machine grants the microphone only to a secure page). None: plain HTTP.
    tls_certificate: str | None = None
    tls_key: str | None = None


@dataclass(frozen=True)
class WebRtcSettings:
    """Browser calls: ICE servers and candidate policy."""

    #: STUN/TURN URLs, comma separated (e.g. "stun:stun.example.org:3478,turn:turn.example.org").
    ice_servers: str = ""
    turn_username: str | None = None
    #: Environment variable holding the TURN credential.
    turn_credential_env: str | None = None
    #: Offer 127.0.0.1 as an ICE candidate (a browser on the same machine, tests, demos).
    allow_loopback: bool = True
    #: Seconds to gather ICE candidates before answering.
    ice_timeout_s: float = 10.0


@dataclass(frozen=True)
class RecordsSettings:
    """Call records and recordings (see docs/records.md)."""

    #: Keep a record of every call (a profile may say `keep_records = false`).
    enabled: bool = True
    #: Where `serve` keeps its data; created at start. Relative to the working directory.
    data_dir: str = "telephony-agent-data"
    #: `sqlite:///PATH` (relative to data_dir) or `postgresql://USER@HOST/DB`
    #: (the password in `PGPASSWORD` or ~/.pgpass, never here). None: data_dir/calls.db.
    database: str | None = None
    #: Record every call as a stereo WAV (a profile may say `record = true/false`).
    record: bool = False
    #: Where recordings go; None: data_dir/recordings.
    recordings_dir: str | None = None
    #: Delete records and recordings older than this many days, at start and daily.
    retention_days: int | None = None
    #: Events waiting for the database before new ones are dropped (and counted).
    queue_size: int = 20000


@dataclass(frozen=True)
class ServerSettings:
    """How `serve` stops: draining on SIGTERM (see docs/operations.md)."""

    #: Seconds live calls may go on after SIGTERM before they are ended politely.
    drain_timeout_s: float = 30.0
    #: What the model is asked to say to calls still live when the drain time is up;
    #: empty: they are hung up without a goodbye.
    drain_goodbye_instructions: str = DEFAULT_DRAIN_GOODBYE


LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[str, ...] = typing.get_args(LogLevel)


@dataclass(frozen=True)
class LogSettings:
    """Log level and renderer; `auto` is console on a terminal and JSON otherwise."""

    level: LogLevel = "info"
    format: Literal["auto", "console", "json"] = "auto"
    #: Per-module levels, e.g. "telephony_agent.sip=debug, aiortc=warning".
    levels: str = ""


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
_TABLE_ARRAYS = frozenset({"profiles", "tools", "registrations", "sip_users"})


def _sections() -> list[str]:
    return [f.name for f in fields(Settings) if f.name not in _TABLE_ARRAYS]


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
}

KNOWN_CODECS = ("opus", "G722", "PCMA", "PCMU")


def _section_types(section_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(section_cls, include_extras=False)


def _apply(settings: Settings, data: Mapping[str, Any], *, from_env: bool, origin: str) -> Settings:
    sections = {f.name: f for f in fields(Settings) if f.name not in _TABLE_ARRAYS}
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
        arrays = _TABLE_ARRAYS - {"sip_users"}  # written as [[sip.users]]
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
        if section.name in _TABLE_ARRAYS:
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
