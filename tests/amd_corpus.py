"""Answered outbound calls, synthesised: people who say a few words and wait, and
answering machines that play a greeting (with or without a beep).

Why generated with espeak-ng: the detector must be judged on many voices and
speeds, and recordings of real voicemail greetings cannot be shipped. The same
corpus feeds the unit test and `benchmarks/bench_amd.py` (its confusion matrix).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from telephony_agent.media.audiofile import decode_audio_file

RATE = 8000

HUMAN_ANSWERS = (
    "Hello?",
    "Yes, speaking.",
    "Hello, this is Anna.",
    "Hi.",
    "Mark Johnson.",
    "Hello, who is this?",
    "Yeah?",
    "Good afternoon.",
)
MACHINE_GREETINGS = (
    "Hi, you have reached the voicemail of John Smith. I can't take your call right now. "
    "Please leave a message after the tone.",
    "Hello, this is Sarah. Sorry I missed your call. Leave your name and number and I will "
    "call you back.",
    "The person you are calling is not available. Please leave a message.",
    "Thank you for calling Riverside Dental. Our office is currently closed. "
    "Please leave a message after the beep.",
    "You have reached five five five, zero one two three. Please leave a message.",
)
VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-scotland", "en+m3")
SPEEDS = (140, 175, 210)


@dataclass(frozen=True)
class Answer:
    """One answered call: what answered, and the callee's audio from the answer on."""

    label: str  # "human" or "machine"
    name: str
    audio: NDArray[np.int16]
    #: Where the spoken part ends, and where the beep starts (machines with one).
    speech_end_ms: int
    beep_ms: int | None = None


def espeak_binary() -> str:
    binary = shutil.which("espeak-ng")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("espeak-ng is not installed (apt-get install espeak-ng)")
        pytest.skip("espeak-ng is not installed")
    return binary


def speak(text: str, voice: str, speed: int, workdir: Path) -> NDArray[np.int16]:
    path = workdir / "speech.wav"
    subprocess.run(
        [espeak_binary(), "-v", voice, "-s", str(speed), "-w", str(path), text],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return decode_audio_file(path, RATE)


def _beep(ms: int = 400, hz: float = 1000.0) -> NDArray[np.float64]:
    t = np.arange(RATE * ms // 1000) / RATE
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)
    return 8000.0 * np.sin(2 * np.pi * hz * t) * ramp


def _assemble(parts: list[NDArray[np.float64]], rng: np.random.Generator) -> NDArray[np.int16]:
    audio = np.concatenate(parts)
    scale = 32768.0 * 10 ** (-62.0 / 20.0)
    audio = audio + rng.normal(0.0, scale, len(audio))
    return np.clip(audio, -32768, 32767).astype(np.int16)


def corpus(
    voices: tuple[str, ...] = VOICES, speeds: tuple[int, ...] = SPEEDS, seed: int = 7
) -> Iterator[Answer]:
    """Every human answer and machine greeting in every voice and speed given."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for voice in voices:
            for speed in speeds:
                for index, text in enumerate(HUMAN_ANSWERS):
                    speech = speak(text, voice, speed, workdir).astype(np.float64)
                    lead = int(rng.integers(200, 900))
                    audio = _assemble(
                        [np.zeros(RATE * lead // 1000), speech, np.zeros(RATE * 4)], rng
                    )
                    end = lead + len(speech) * 1000 // RATE
                    yield Answer("human", f"human{index}-{voice}-{speed}", audio, end)
                for index, text in enumerate(MACHINE_GREETINGS):
                    speech = speak(text, voice, speed, workdir).astype(np.float64)
                    lead = int(rng.integers(100, 600))
                    end = lead + len(speech) * 1000 // RATE
                    parts = [np.zeros(RATE * lead // 1000), speech]
                    beep_ms = None
                    if index % 2 == 0:
                        parts += [np.zeros(RATE // 2), _beep()]
                        beep_ms = end + 500
                    parts.append(np.zeros(RATE * 3))
                    audio = _assemble(parts, rng)
                    name = f"machine{index}-{voice}-{speed}"
                    yield Answer("machine", name, audio, end, beep_ms)
