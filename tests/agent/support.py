"""Shared helpers for the profile tests: parse TOML text the way the settings loader does."""

from __future__ import annotations

import tomllib
import wave
from pathlib import Path

from telephony_agent.agent import Profile, ProfileDefaults, parse_profile_tables

ORIGIN = "agent.toml"
TOOLS = ("end_call", "transfer_call", "send_dtmf", "check_availability", "book_room")
DEFAULTS = ProfileDefaults(
    instructions="You are the front desk. Be brief.",
    voice="marina",
    greeting="Greet {caller} and offer help.",
    max_duration_s=600.0,
)


def parse(
    text: str,
    *,
    defaults: ProfileDefaults = DEFAULTS,
    base_dir: Path | None = None,
    known_tools: tuple[str, ...] = TOOLS,
) -> tuple[Profile, ...]:
    """Profiles from the text of a settings file."""
    data = tomllib.loads(text)
    return parse_profile_tables(
        data.get("profiles"),
        defaults=defaults,
        known_tools=known_tools,
        base_dir=base_dir or Path("/nonexistent-base"),
        origin=ORIGIN,
    )


def one(
    text: str, *, defaults: ProfileDefaults = DEFAULTS, base_dir: Path | None = None
) -> Profile:
    """The single profile of a one-table file, with `name = "p"` prepended."""
    profiles = parse('[[profiles]]\nname = "p"\n' + text, defaults=defaults, base_dir=base_dir)
    assert len(profiles) == 1
    return profiles[0]


def write_wav(
    path: Path, *, channels: int = 1, width: int = 2, rate: int = 8000, frames: int = 80
) -> Path:
    """A tiny WAV of silence with the given layout."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(b"\x00" * (channels * width * frames))
    return path
