"""What the backend "says": echo the caller, play a tone, follow a JSON script, run
the booking line (`booking_behaviour.py`), or talk on and on (`sample_speech.py`).

A behaviour turns one turn's input into the content of one response (audio at the
output rate, the assistant transcript, function calls). It knows nothing about events
or pacing; `response.py` turns its content into the event stream.

Script file format (JSON): either a list of turns or ``{"turns": [...]}``; each turn is
``{"say": "text", "tone_ms": 800, "function_calls": [{"name": "...", "arguments": {...}}]}``.
Every response consumes the next turn (wrapping around at the end), so a function call
round trip is: turn N carries the calls, the response to the client's follow-up
``response.create`` is turn N+1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from numpy.typing import NDArray

from telephony_agent.realtime.backend.booking_behaviour import BookingBehaviour
from telephony_agent.realtime.backend.phrases import booking_phrases
from telephony_agent.realtime.backend.sample_speech import ContinuousBehaviour
from telephony_agent.realtime.backend.turn import (
    Behaviour,
    FunctionCallSpec,
    ResponseContent,
    ToolOutput,
    TurnInput,
)

__all__ = [
    "Behaviour",
    "BookingBehaviour",
    "ContinuousBehaviour",
    "EchoBehaviour",
    "FunctionCallSpec",
    "ResponseContent",
    "ScriptBehaviour",
    "ScriptError",
    "ScriptTurn",
    "ToneBehaviour",
    "ToolOutput",
    "TurnInput",
    "load_script",
    "make_behaviour",
    "parse_script",
    "resample",
    "seconds",
    "tone",
]

TONE_LEVEL = 0.3
"""Peak amplitude of synthetic tones (about -13 dBFS RMS): loud, never clipping."""
FADE_MS = 5
FALLBACK_TONE_MS = 500
"""Echo with nothing to echo (text-only turn, idle timeout) answers with a short tone."""
DEFAULT_SAY_TONE_MS = 800


class ScriptError(ValueError):
    """The script file is missing or malformed; the message names the turn and field."""


@dataclass(frozen=True)
class ScriptTurn:
    say: str
    tone_ms: int
    function_calls: tuple[FunctionCallSpec, ...]


def tone(hz: float, ms: int, rate: int) -> NDArray[np.int16]:
    """A sine with short fades, so a cut at any point is the only click a client hears."""
    n = rate * ms // 1000
    t = np.arange(n, dtype=np.float64) / rate
    wave = np.sin(2.0 * np.pi * hz * t) * TONE_LEVEL
    fade = min(n // 2, rate * FADE_MS // 1000)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        wave[:fade] *= ramp
        wave[n - fade :] *= ramp[::-1]
    return np.round(wave * 32767.0).astype(np.int16)


def resample(pcm: NDArray[np.int16], in_rate: int, out_rate: int) -> NDArray[np.int16]:
    if in_rate == out_rate or len(pcm) == 0:
        return pcm
    out: NDArray[np.int16] = soxr.resample(pcm, in_rate, out_rate, quality="HQ")
    return out


def seconds(pcm: NDArray[np.int16] | None, rate: int) -> float:
    return 0.0 if pcm is None else len(pcm) / rate


class EchoBehaviour:
    """Answers with the caller's own committed speech: the easiest output to verify."""

    def __init__(self, tone_hz: float) -> None:
        self.tone_hz = tone_hz

    def respond(self, turn: TurnInput) -> ResponseContent:
        if turn.user_audio is None or len(turn.user_audio) == 0:
            audio = tone(self.tone_hz, FALLBACK_TONE_MS, turn.output_rate)
            return ResponseContent(audio, "Nothing to echo yet.")
        audio = resample(turn.user_audio, turn.input_rate, turn.output_rate)
        secs = seconds(turn.user_audio, turn.input_rate)
        return ResponseContent(audio, f"Echo of {secs:.2f} s of caller speech.")


class ToneBehaviour:
    """About one second of tone per response: constant, cheap load for benchmarks."""

    def __init__(self, tone_hz: float, ms: int = 1000) -> None:
        self.tone_hz = tone_hz
        self.ms = ms

    def respond(self, turn: TurnInput) -> ResponseContent:
        audio = tone(self.tone_hz, self.ms, turn.output_rate)
        return ResponseContent(audio, f"Tone of {self.tone_hz:g} Hz for {self.ms / 1000:.2f} s.")


class ScriptBehaviour:
    """Plays the script's turns in order; one instance per connection (it has a cursor)."""

    def __init__(self, turns: tuple[ScriptTurn, ...], tone_hz: float) -> None:
        if not turns:
            raise ScriptError("script has no turns")
        self.turns = turns
        self.tone_hz = tone_hz
        self.index = 0

    def respond(self, turn: TurnInput) -> ResponseContent:
        step = self.turns[self.index % len(self.turns)]
        self.index += 1
        audio = tone(self.tone_hz, step.tone_ms, turn.output_rate)
        return ResponseContent(audio, step.say, step.function_calls)


def load_script(path: Path) -> tuple[ScriptTurn, ...]:
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScriptError(f"cannot read script {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ScriptError(f"script {path} is not JSON: {exc}") from exc
    return parse_script(raw)


def parse_script(raw: Any) -> tuple[ScriptTurn, ...]:
    turns = raw.get("turns") if isinstance(raw, dict) else raw
    if not isinstance(turns, list) or not turns:
        raise ScriptError('script must be a non-empty list of turns or {"turns": [...]}')
    return tuple(_parse_turn(i, t) for i, t in enumerate(turns))


def _parse_turn(index: int, raw: Any) -> ScriptTurn:
    where = f"script turn {index}"
    if not isinstance(raw, dict):
        raise ScriptError(f"{where} must be an object")
    say = raw.get("say", "")
    if not isinstance(say, str):
        raise ScriptError(f"{where}: 'say' must be a string")
    tone_ms = raw.get("tone_ms", DEFAULT_SAY_TONE_MS if say else 0)
    if not isinstance(tone_ms, int) or isinstance(tone_ms, bool) or not 0 <= tone_ms <= 600_000:
        raise ScriptError(f"{where}: 'tone_ms' must be an integer between 0 and 600000")
    calls_raw = raw.get("function_calls", [])
    if not isinstance(calls_raw, list):
        raise ScriptError(f"{where}: 'function_calls' must be a list")
    calls = []
    for j, call in enumerate(calls_raw):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
            raise ScriptError(f"{where}, function call {j}: needs a non-empty 'name'")
        args = call.get("arguments", {})
        text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        calls.append(FunctionCallSpec(call["name"], text))
    if not say and tone_ms == 0 and not calls:
        raise ScriptError(f"{where} says nothing and calls nothing")
    return ScriptTurn(say, tone_ms, tuple(calls))


def make_behaviour(name: str, tone_hz: float, script: tuple[ScriptTurn, ...] | None) -> Behaviour:
    """A fresh behaviour for one connection (script cursors are per connection)."""
    if name == "echo":
        return EchoBehaviour(tone_hz)
    if name == "tone":
        return ToneBehaviour(tone_hz)
    if name == "booking":
        return BookingBehaviour(booking_phrases())
    if name == "continuous":
        return ContinuousBehaviour()
    if script is None:
        raise ScriptError("behaviour 'script' needs a loaded script")
    return ScriptBehaviour(script, tone_hz)
