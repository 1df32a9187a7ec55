"""Answering-machine detection on synthesised answers, and its single rules."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from telephony_agent.audio.amd import AmdVerdict, AnsweringMachineDetector
from tests.amd_corpus import RATE, corpus

FRAME = RATE // 50


def _run(audio: NDArray[np.int16]) -> tuple[AmdVerdict | None, AnsweringMachineDetector, int]:
    """Feed until the detector is done; the ms at which a message could start (or -1)."""
    detector = AnsweringMachineDetector(RATE)
    verdict = None
    ready_at = -1
    for start in range(0, len(audio) - FRAME + 1, FRAME):
        decided = detector.feed(audio[start : start + FRAME])
        verdict = decided or verdict
        if detector.ready_for_message and ready_at < 0:
            ready_at = detector.elapsed_ms
    return verdict, detector, ready_at


def test_the_generated_answers_are_told_apart() -> None:
    answers = list(corpus(voices=("en-us", "en-gb-scotland", "en-us+f3"), speeds=(140, 200)))
    confusion: dict[tuple[str, str], int] = {}
    for answer in answers:
        verdict, detector, ready_at = _run(answer.audio)
        kind = verdict.kind if verdict else "none"
        confusion[(answer.label, kind)] = confusion.get((answer.label, kind), 0) + 1
        if answer.label == "human" and kind == "human":
            assert verdict is not None and verdict.decided_ms <= 3500, (answer.name, verdict)
        if answer.label == "machine" and kind == "machine":
            assert verdict is not None and verdict.decided_ms <= 4500, (answer.name, verdict)
            # A message is left at the beep or after the greeting's end, never over it.
            if answer.beep_ms is not None:
                assert detector.beep_at_ms is not None
                assert 0 <= detector.beep_at_ms - answer.beep_ms <= 200, answer.name
                assert ready_at == detector.beep_at_ms
            else:
                delay = ready_at - answer.speech_end_ms
                assert 0 < delay <= 2000, (answer.name, delay)
    humans = sum(v for (label, _), v in confusion.items() if label == "human")
    machines = sum(v for (label, _), v in confusion.items() if label == "machine")
    assert confusion.get(("machine", "machine"), 0) == machines, confusion
    assert confusion.get(("human", "human"), 0) >= 0.95 * humans, confusion


def _noise(ms: int, dbfs: float = -62.0, seed: int = 1) -> NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 32768.0 * 10 ** (dbfs / 20), RATE * ms // 1000)


def _tone(ms: int, hz: float, amplitude: float = 6000.0) -> NDArray[np.float64]:
    t = np.arange(RATE * ms // 1000) / RATE
    return amplitude * np.sin(2 * np.pi * hz * t)


def _pcm(*parts: NDArray[np.float64]) -> NDArray[np.int16]:
    return np.clip(np.concatenate(parts), -32768, 32767).astype(np.int16)


def test_silence_is_unknown_after_the_initial_window() -> None:
    verdict, _, _ = _run(_pcm(_noise(5000)))
    assert verdict == AmdVerdict("unknown", "silence", 4000)


def test_a_click_is_not_a_greeting() -> None:
    verdict, _, _ = _run(_pcm(_noise(500), _tone(40, 300, 20000), _noise(4600)))
    assert verdict is not None and verdict.kind == "unknown"


def test_a_beep_alone_is_a_machine_ready_for_the_message() -> None:
    verdict, detector, ready_at = _run(_pcm(_noise(300), _tone(500, 1000), _noise(500)))
    assert verdict is not None and (verdict.kind, verdict.reason) == ("machine", "beep")
    assert detector.beep_at_ms is not None and 400 <= detector.beep_at_ms <= 480
    assert ready_at == detector.beep_at_ms


def test_a_voice_like_harmonic_sound_is_not_a_beep() -> None:
    # A buzzy vowel: many harmonics of 140 Hz, no single peak holding the energy.
    t = np.arange(RATE) / RATE
    vowel = sum(3000 / k * np.sin(2 * np.pi * 140 * k * t) for k in range(1, 20))
    detector = AnsweringMachineDetector(RATE)
    audio = _pcm(np.asarray(vowel, dtype=np.float64))
    for start in range(0, len(audio) - FRAME + 1, FRAME):
        detector.feed(audio[start : start + FRAME])
    assert detector.beep_at_ms is None
