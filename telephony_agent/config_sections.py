"""The `[section]` tables of the settings file, as frozen dataclasses with defaults.

Why apart from `config.py`: the schema (what each section holds, with its default
and a comment saying what it means) is read far more often than the loading rules,
and keeping it in one file of plain declarations lets `config.py` be about parsing,
precedence and cross-key checks.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from telephony_agent.agent import (
    DEFAULT_DTMF_MESSAGE,
    DEFAULT_FILLER_AFTER_S,
    DEFAULT_FILLER_INSTRUCTIONS,
    DEFAULT_TOOL_TIMEOUT_S,
)
from telephony_agent.audio.voicing import LocalVad
from telephony_agent.call.backchannel import DEFAULT_BACKCHANNELS
from telephony_agent.call.idle import DEFAULT_GOODBYE, DEFAULT_REPROMPT

__all__ = [
    "DEFAULT_DRAIN_GOODBYE",
    "LOG_LEVELS",
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
    "SipSettings",
    "TurnsSettings",
    "VadSettings",
    "WebRtcSettings",
]

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
class AdmissionSettings:
    """Refusing new calls past the knee, so the live ones stay clean (docs/operations.md).

    Why measured and not a fixed `max_calls`: what one call costs depends on the codec,
    the provider's pacing and the machine, and a core shared with other work has less to
    give; the media clock's lateness and this process's CPU say when live calls are about
    to suffer, whatever the cause.
    """

    enabled: bool = True
    #: The media clock's lateness (p99 over the last second) above which new calls are refused.
    max_clock_lateness_ms: float = 4.0
    #: This process's CPU, as a fraction of one core, above which new calls are refused;
    #: new calls are also refused when the measured cost per call says they would pass it.
    max_cpu: float = 0.85
    #: Lateness counts only while the process uses at least this share of a core: below it
    #: the lateness comes from elsewhere (another process, the host), and refusing our
    #: calls would not cure it.
    lateness_min_cpu: float = 0.5
    #: A measure must stay over its limit this long before calls are refused: one stall
    #: (a garbage collection, a burst of call set-ups) is not overload. New calls are
    #: still charged against the headroom meanwhile.
    enter_after_s: float = 2.0
    #: Calls are taken again once both measures stayed under this fraction of their limit
    #: for `resume_after_s` seconds (hysteresis: no flapping at the edge).
    resume_below: float = 0.8
    resume_after_s: float = 3.0
    #: CPU one call costs (fraction of a core) until it has been measured live.
    cpu_per_call: float = 0.012
    #: SIP answer to a call refused for overload: 503 (with Retry-After) or 486 Busy Here.
    refuse_with: int = 503
    retry_after_s: int = 5


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
