"""What a caller hears while a tool runs, and how long a tool may take: one checked value.

Why one value with one choice in it: a profile picks one kind of feedback for the wait
(a short acknowledgement asked of the model, a recording played once, or hold audio
looped), so the three keys that choose it (`filler`, `filler_audio`, `hold_audio`)
replace each other as a group: a profile that sets any of them drops the choice it
would inherit from `[agent]`, and a table that sets two of them is an error. The timing
keys (`filler_after_s`, `tool_timeout_s`) and `filler_instructions` inherit one by one.
Recordings are checked here (an existing PCM16 WAV, not too long) so a bad file stops
the load, not a call; they are decoded later, where the audio code lives.
"""

from __future__ import annotations

import wave
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from telephony_agent.agent.values import KeyChecker

__all__ = [
    "DEFAULT_FILLER_AFTER_S",
    "DEFAULT_FILLER_INSTRUCTIONS",
    "DEFAULT_TOOL_TIMEOUT_S",
    "FILLER_AFTER_RANGE",
    "HOLD_TONE",
    "TOOL_TIMEOUT_RANGE",
    "TOOL_WAIT_KEYS",
    "ToolFeedbackKind",
    "ToolWait",
    "parse_tool_wait",
]

#: none: silence; model: one spoken acknowledgement asked of the model; recording: a
#: filler recording played once; hold: hold audio (a recording or the tone) looped.
ToolFeedbackKind = Literal["none", "model", "recording", "hold"]

#: `hold_audio = "tone"` asks for the built-in soft hold tone instead of a file.
HOLD_TONE = "tone"
DEFAULT_FILLER_AFTER_S = 1.2
DEFAULT_TOOL_TIMEOUT_S = 30.0
DEFAULT_FILLER_INSTRUCTIONS = (
    "A tool you called is still working. Tell the caller in a few words that you are "
    "checking and ask them to hold on, for example: One moment, please. Do not answer "
    "their request yet and do not call any tool."
)
FILLER_AFTER_RANGE = (0.2, 30.0)
TOOL_TIMEOUT_RANGE = (1.0, 600.0)
#: Longest filler or hold recording: it is held in memory, decoded, for every leg rate.
MAX_RECORDING_S = 60.0

_CHOICE_KEYS = ("filler", "filler_audio", "hold_audio")
_FILLER_VALUES = ("none", "model")
TOOL_WAIT_KEYS: tuple[str, ...] = (
    *_CHOICE_KEYS,
    "filler_after_s",
    "filler_instructions",
    "tool_timeout_s",
)


@dataclass(frozen=True)
class ToolWait:
    """The resolved choice. `audio` is the absolute path of the filler or hold recording;
    None with `feedback = "hold"` means the built-in tone."""

    feedback: ToolFeedbackKind = "none"
    audio: Path | None = None
    filler_after_s: float = DEFAULT_FILLER_AFTER_S
    tool_timeout_s: float = DEFAULT_TOOL_TIMEOUT_S
    filler_instructions: str = DEFAULT_FILLER_INSTRUCTIONS

    def describe(self) -> dict[str, object]:
        """The keys as a settings file would write them (for `config check`)."""
        result: dict[str, object] = {}
        if self.feedback in ("none", "model"):
            result["filler"] = self.feedback
        elif self.feedback == "recording":
            result["filler_audio"] = str(self.audio)
        else:
            result["hold_audio"] = str(self.audio) if self.audio is not None else HOLD_TONE
        result["filler_after_s"] = self.filler_after_s
        result["tool_timeout_s"] = self.tool_timeout_s
        if self.feedback == "model":
            result["filler_instructions"] = self.filler_instructions
        return result


def parse_tool_wait(
    check: KeyChecker, table: Mapping[str, Any], inherited: ToolWait, base_dir: Path
) -> ToolWait:
    """The table's tool-wait keys over `inherited`; relative recordings start at `base_dir`."""
    chosen = [key for key in _CHOICE_KEYS if key in table]
    if len(chosen) > 1:
        check.fail(
            chosen[1],
            table[chosen[1]],
            f"{chosen[0]} is set too; expected only one of filler, filler_audio and hold_audio",
        )
    feedback, audio = inherited.feedback, inherited.audio
    if chosen == ["filler"]:
        model = check.choice("filler", table["filler"], _FILLER_VALUES) == "model"
        feedback, audio = ("model" if model else "none"), None
    elif chosen == ["filler_audio"]:
        feedback, audio = "recording", _recording(check, "filler_audio", table, base_dir)
    elif chosen == ["hold_audio"]:
        feedback = "hold"
        tone = table["hold_audio"] == HOLD_TONE
        audio = None if tone else _recording(check, "hold_audio", table, base_dir)
    after = table.get("filler_after_s", inherited.filler_after_s)
    timeout = table.get("tool_timeout_s", inherited.tool_timeout_s)
    return ToolWait(
        feedback=feedback,
        audio=audio,
        filler_after_s=check.number("filler_after_s", after, *FILLER_AFTER_RANGE),
        tool_timeout_s=check.number("tool_timeout_s", timeout, *TOOL_TIMEOUT_RANGE),
        filler_instructions=check.text(
            "filler_instructions", table.get("filler_instructions", inherited.filler_instructions)
        ),
    )


def _recording(check: KeyChecker, key: str, table: Mapping[str, Any], base_dir: Path) -> Path:
    value = table[key]
    path = check.wav_file(key, value, base_dir)
    with wave.open(str(path), "rb") as wav:  # readable: wav_file has just opened it
        seconds = wav.getnframes() / wav.getframerate()
    if seconds > MAX_RECORDING_S:
        check.fail(
            key,
            value,
            f"{path} lasts {seconds:.1f} s; expected a recording of at most {MAX_RECORDING_S:g} s",
        )
    return path
