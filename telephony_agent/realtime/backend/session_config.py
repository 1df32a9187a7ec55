"""The session configuration: parse GA or beta shaped `session.update`, render `session`.

`session.update` is a patch, and the reply carries the full effective configuration,
which is how a client learns what it actually got (notably the output rate, which a
provider may force). Both request shapes are parsed, because Yandex examples sent the
beta shape with GA event names for months; the echo is rendered in the connection's
dialect (GA, beta, or Yandex's mixed GA + legacy top-level fields).

Formats: `audio/pcm` at any supported rate, and G.711 (`audio/pcmu`, `audio/pcma`, 8 kHz)
where the dialect takes it (GA, beta); the Yandex dialect refuses G.711 as an invalid
value, the way a provider that documents PCM only would.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

from telephony_agent.realtime.backend.audio_format import (
    BETA_NAMES,
    G711_RATE,
    G711_TYPES,
    WireFormat,
)
from telephony_agent.realtime.backend.options import SUPPORTED_RATES
from telephony_agent.realtime.backend.wire_dialect import WireDialect

BETA_ONLY_KEYS = frozenset(
    {
        "modalities",
        "input_audio_format",
        "output_audio_format",
        "turn_detection",
        "voice",
        "input_audio_transcription",
        "input_audio_noise_reduction",
        "max_response_output_tokens",
        "temperature",
    }
)
_GA_KEYS = frozenset(
    {
        "type",
        "model",
        "instructions",
        "output_modalities",
        "audio",
        "tools",
        "tool_choice",
        "max_output_tokens",
    }
)
_SEMANTIC_SILENCE_MS = {"low": 1000, "medium": 500, "auto": 500, "high": 250}


class ConfigError(Exception):
    """A session.update the backend refuses; becomes an `error` event, config unchanged."""

    def __init__(self, message: str, param: str | None, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class TurnDetection:
    type: str = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = None
    eagerness: str | None = None

    def to_wire(self) -> dict[str, Any]:
        if self.type == "semantic_vad":
            return {
                "type": self.type,
                "eagerness": self.eagerness or "auto",
                "create_response": self.create_response,
                "interrupt_response": self.interrupt_response,
            }
        return {
            "type": self.type,
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
            "idle_timeout_ms": self.idle_timeout_ms,
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
        }


@dataclass(frozen=True)
class SessionConfig:
    id: str
    model: str
    expires_at: int
    forced_output_rate: int | None = None
    instructions: str = ""
    output_modalities: tuple[str, ...] = ("audio",)
    voice: str = "marin"
    speed: float = 1.0
    input_format: WireFormat = field(default_factory=WireFormat)
    output_format: WireFormat = field(default_factory=WireFormat)
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    transcription: dict[str, Any] | None = None
    noise_reduction: dict[str, Any] | None = None
    tools: tuple[Any, ...] = ()
    tool_choice: Any = "auto"
    max_output_tokens: int | str = "inf"
    input_extras: dict[str, Any] = field(default_factory=dict)
    output_extras: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def input_rate(self) -> int:
        return self.input_format.rate

    @property
    def output_rate(self) -> int:
        return self.output_format.rate

    @property
    def effective_output_rate(self) -> int:
        """What the audio is generated at: a forced PCM rate overrides the asked one."""
        if self.output_format.law is not None:
            return G711_RATE
        return self.forced_output_rate or self.output_rate

    @property
    def effective_output_format(self) -> WireFormat:
        return WireFormat(self.output_format.type, self.effective_output_rate)

    @property
    def audio_out(self) -> bool:
        return "audio" in self.output_modalities

    def render(self, dialect: WireDialect) -> dict[str, Any]:
        if dialect.beta_session_shape:
            return self._render_beta()
        td = None if self.turn_detection is None else self.turn_detection.to_wire()
        session: dict[str, Any] = {
            "type": "realtime",
            "object": "realtime.session",
            "id": self.id,
            "model": self.model,
            "output_modalities": list(self.output_modalities),
            "instructions": self.instructions,
            "tools": copy.deepcopy(list(self.tools)),
            "tool_choice": self.tool_choice,
            "max_output_tokens": self.max_output_tokens,
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "include": None,
            "expires_at": self.expires_at,
            "audio": {
                "input": {
                    "format": self.input_format.to_wire(),
                    "transcription": self.transcription,
                    "noise_reduction": self.noise_reduction,
                    "turn_detection": td,
                    **self.input_extras,
                },
                "output": {
                    "format": self.effective_output_format.to_wire(),
                    "voice": self.voice,
                    "speed": self.speed,
                    **self.output_extras,
                },
            },
            **self.extras,
        }
        if dialect.mixed_session_echo:
            del session["type"]
            session["turn_detection"] = td
            session["voice"] = self.voice
            session["input_audio_transcription"] = self.transcription
        return session

    def _render_beta(self) -> dict[str, Any]:
        return {
            "object": "realtime.session",
            "id": self.id,
            "model": self.model,
            "expires_at": self.expires_at,
            "modalities": ["audio", "text"] if self.audio_out else ["text"],
            "instructions": self.instructions,
            "voice": self.voice,
            "speed": self.speed,
            "input_audio_format": self.input_format.beta_name(),
            "output_audio_format": self.output_format.beta_name(),
            "input_audio_transcription": self.transcription,
            "input_audio_noise_reduction": self.noise_reduction,
            "turn_detection": None
            if self.turn_detection is None
            else self.turn_detection.to_wire(),
            "tools": copy.deepcopy(list(self.tools)),
            "tool_choice": self.tool_choice,
            "temperature": 0.8,
            "max_response_output_tokens": self.max_output_tokens,
        }


def is_beta_shape(session: dict[str, Any]) -> bool:
    return any(key in session for key in BETA_ONLY_KEYS)


def apply_update(config: SessionConfig, session: Any, *, g711: bool = True) -> SessionConfig:
    """Return `config` patched by a `session.update` body; raise ConfigError if invalid.
    `g711` False refuses G.711 formats (the Yandex dialect)."""
    if not isinstance(session, dict):
        raise ConfigError("Invalid type for 'session': expected an object.", "session")
    kind = session.get("type", "realtime")
    if kind != "realtime":
        raise ConfigError(
            f"Invalid value: '{kind}'. Supported values are: 'realtime'.", "session.type"
        )
    changes: dict[str, Any] = {}
    extras = dict(config.extras)
    for key, value in session.items():
        if key not in _GA_KEYS and key not in BETA_ONLY_KEYS:
            extras[key] = value
    changes["extras"] = extras
    if "model" in session:
        changes["model"] = _str(session["model"], "session.model")
    if "instructions" in session:
        changes["instructions"] = _str(session["instructions"], "session.instructions")
    for key in ("output_modalities", "modalities"):
        if key in session:
            changes["output_modalities"] = _modalities(session[key], f"session.{key}")
    if "tools" in session:
        if not isinstance(session["tools"], list):
            raise ConfigError(
                "Invalid type for 'session.tools': expected an array.", "session.tools"
            )
        changes["tools"] = tuple(session["tools"])
    if "tool_choice" in session:
        changes["tool_choice"] = session["tool_choice"]
    for key in ("max_output_tokens", "max_response_output_tokens"):
        if key in session:
            changes["max_output_tokens"] = _max_tokens(session[key], f"session.{key}")
    _apply_audio(config, session, changes, g711)
    _apply_beta_audio(session, changes, g711)
    return replace(config, **changes)


def _apply_audio(
    config: SessionConfig, session: dict[str, Any], changes: dict[str, Any], g711: bool
) -> None:
    audio = session.get("audio")
    if audio is None:
        return
    if not isinstance(audio, dict):
        raise ConfigError("Invalid type for 'session.audio': expected an object.", "session.audio")
    inp = audio.get("input") or {}
    out = audio.get("output") or {}
    if not isinstance(inp, dict) or not isinstance(out, dict):
        raise ConfigError("'session.audio.input/output' must be objects.", "session.audio")
    if "format" in inp:
        changes["input_format"] = _format(inp["format"], "session.audio.input.format", g711)
    if "turn_detection" in inp:
        changes["turn_detection"] = _turn_detection(
            inp["turn_detection"], "session.audio.input.turn_detection"
        )
    if "transcription" in inp:
        changes["transcription"] = _optional_object(
            inp["transcription"], "session.audio.input.transcription"
        )
    if "noise_reduction" in inp:
        changes["noise_reduction"] = _optional_object(
            inp["noise_reduction"], "session.audio.input.noise_reduction"
        )
    known_in = {"format", "turn_detection", "transcription", "noise_reduction"}
    changes["input_extras"] = {
        **config.input_extras,
        **{k: v for k, v in inp.items() if k not in known_in},
    }
    if "format" in out:
        changes["output_format"] = _format(out["format"], "session.audio.output.format", g711)
    if "voice" in out:
        changes["voice"] = _voice(out["voice"], "session.audio.output.voice")
    if "speed" in out:
        changes["speed"] = _speed(out["speed"], "session.audio.output.speed")
    known_out = {"format", "voice", "speed"}
    changes["output_extras"] = {
        **config.output_extras,
        **{k: v for k, v in out.items() if k not in known_out},
    }


def _apply_beta_audio(session: dict[str, Any], changes: dict[str, Any], g711: bool) -> None:
    if "input_audio_format" in session:
        changes["input_format"] = _beta_format(
            session["input_audio_format"], "input_audio_format", g711
        )
    if "output_audio_format" in session:
        changes["output_format"] = _beta_format(
            session["output_audio_format"], "output_audio_format", g711
        )
    if "turn_detection" in session:
        changes["turn_detection"] = _turn_detection(
            session["turn_detection"], "session.turn_detection"
        )
    if "voice" in session:
        changes["voice"] = _voice(session["voice"], "session.voice")
    if "speed" in session:
        changes["speed"] = _speed(session["speed"], "session.speed")
    if "input_audio_transcription" in session:
        changes["transcription"] = _optional_object(
            session["input_audio_transcription"], "session.input_audio_transcription"
        )
    if "input_audio_noise_reduction" in session:
        changes["noise_reduction"] = _optional_object(
            session["input_audio_noise_reduction"], "session.input_audio_noise_reduction"
        )


def _str(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"Invalid type for '{param}': expected a string.", param)
    return value


def _optional_object(value: Any, param: str) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"Invalid type for '{param}': expected an object or null.", param)
    return value


def _modalities(value: Any, param: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or any(m not in ("audio", "text") for m in value):
        raise ConfigError(
            f"Invalid value for '{param}': expected a non-empty array of 'audio' or 'text'.",
            param,
        )
    # ["text", "audio"] (Yandex examples, beta) means audio with a transcript.
    return ("audio",) if "audio" in value else ("text",)


def _max_tokens(value: Any, param: str) -> int | str:
    if value == "inf":
        return "inf"
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ConfigError(f"Invalid value for '{param}': expected a positive integer or 'inf'.", param)


def _format(value: Any, param: str, g711: bool) -> WireFormat:
    if not isinstance(value, dict):
        raise ConfigError(f"Invalid type for '{param}': expected an object.", param)
    kind = value.get("type", "audio/pcm")
    if kind in G711_TYPES and g711:
        return WireFormat(kind, G711_RATE)
    if kind != "audio/pcm":
        supported = "'audio/pcm', 'audio/pcmu' and 'audio/pcma'" if g711 else "'audio/pcm'"
        raise ConfigError(
            f"Invalid value: '{kind}'. Supported values are: {supported}.",
            f"{param}.type",
            "invalid_value",
        )
    rate = value.get("rate", 24000)
    if rate not in SUPPORTED_RATES or isinstance(rate, bool):
        supported = ", ".join(str(r) for r in SUPPORTED_RATES)
        raise ConfigError(
            f"Invalid value for '{param}.rate': {rate!r}. Supported values are: {supported}.",
            f"{param}.rate",
        )
    return WireFormat("audio/pcm", int(rate))


def _beta_format(value: Any, param: str, g711: bool) -> WireFormat:
    kind = BETA_NAMES.get(value) if isinstance(value, str) else None
    if kind == "audio/pcm":
        return WireFormat("audio/pcm", 24000)
    if kind is not None and g711:
        return WireFormat(kind, G711_RATE)
    raise ConfigError(
        f"Unsupported audio format {value!r}: this backend speaks pcm16"
        + (", g711_ulaw and g711_alaw." if g711 else " only."),
        f"session.{param}",
        "unsupported_audio_format",
    )


def _voice(value: Any, param: str) -> str:
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return _str(value, param)


def _speed(value: Any, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.25 <= value <= 1.5:
        raise ConfigError(f"Invalid value for '{param}': expected a number in [0.25, 1.5].", param)
    return float(value)


def _turn_detection(value: Any, param: str) -> TurnDetection | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"Invalid type for '{param}': expected an object or null.", param)
    kind = value.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise ConfigError(
            f"Invalid value: '{kind}'. Supported values are: 'server_vad' and 'semantic_vad'.",
            f"{param}.type",
        )
    defaults = TurnDetection()
    threshold = _number(value.get("threshold", defaults.threshold), f"{param}.threshold", 0, 1)
    prefix = _int(
        value.get("prefix_padding_ms", defaults.prefix_padding_ms), f"{param}.prefix_padding_ms"
    )
    silence = _int(
        value.get("silence_duration_ms", defaults.silence_duration_ms),
        f"{param}.silence_duration_ms",
    )
    idle = value.get("idle_timeout_ms")
    if idle is not None:
        idle = _int(idle, f"{param}.idle_timeout_ms")
    eagerness = None
    if kind == "semantic_vad":
        eagerness = value.get("eagerness", "auto")
        if eagerness not in _SEMANTIC_SILENCE_MS:
            raise ConfigError(
                f"Invalid value: '{eagerness}'. Supported values are: 'low', 'medium', "
                "'high' and 'auto'.",
                f"{param}.eagerness",
            )
        silence = _SEMANTIC_SILENCE_MS[eagerness]
    return TurnDetection(
        type=kind,
        threshold=threshold,
        prefix_padding_ms=prefix,
        silence_duration_ms=silence,
        create_response=bool(value.get("create_response", True)),
        interrupt_response=bool(value.get("interrupt_response", True)),
        idle_timeout_ms=idle,
        eagerness=eagerness,
    )


def _number(value: Any, param: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(
            f"Invalid value for '{param}': expected a number in [{low}, {high}].", param
        )
    return float(value)


def _int(value: Any, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 600_000:
        raise ConfigError(f"Invalid value for '{param}': expected an integer >= 0.", param)
    return value
