"""`greeting_audio`: a real, readable PCM16 WAV, resolved against the settings file's folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from telephony_agent.errors import ConfigError

from .support import ORIGIN, one, parse, write_wav


def error_of(text: str, base_dir: Path) -> str:
    """The one-line message of the ConfigError that parsing `text` raises."""
    with pytest.raises(ConfigError) as info:
        parse(text, base_dir=base_dir)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{ORIGIN}: ")
    return message


def test_greeting_audio_relative_and_absolute(tmp_path: Path) -> None:
    (tmp_path / "sounds").mkdir()
    wav = write_wav(tmp_path / "sounds" / "hi.wav", channels=2, rate=48000)
    relative = one('greeting_audio = "sounds/hi.wav"\n', base_dir=tmp_path)
    assert relative.greeting_audio == wav.resolve()
    absolute = one(f'greeting_audio = "{wav}"\n', base_dir=Path("/nonexistent"))
    assert absolute.greeting_audio == wav.resolve()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "missing.wav", "no such file"),
        (lambda d: d, "no such file"),
        (lambda d: write_wav(d / "x.wav", width=1), "has 8-bit samples"),
        (lambda d: write_wav(d / "x.wav", width=3), "has 24-bit samples"),
        (lambda d: write_wav(d / "x.wav", channels=3), "has 3 channels"),
        (lambda d: write_wav(d / "x.wav", frames=0), "holds no audio"),
    ],
)
def test_greeting_audio_must_be_a_pcm16_wav(
    tmp_path: Path, make: Callable[[Path], Path], expected: str
) -> None:
    path = make(tmp_path)
    message = error_of(f'[[profiles]]\nname = "p"\ngreeting_audio = "{path}"\n', base_dir=tmp_path)
    assert f"profiles[p].greeting_audio = '{path}': " in message
    assert expected in message
    assert message.endswith("expected a mono or stereo 16-bit PCM WAV file")


def test_greeting_audio_that_is_not_a_wav(tmp_path: Path) -> None:
    (tmp_path / "x.wav").write_bytes(b"ID3\x03\x00 this is an mp3")
    message = error_of('[[profiles]]\nname = "p"\ngreeting_audio = "x.wav"\n', base_dir=tmp_path)
    assert "profiles[p].greeting_audio = 'x.wav': " in message
    assert "is not a readable WAV file (file does not start with RIFF id)" in message
