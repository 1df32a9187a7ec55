"""Answering-machine detection from the callee's first seconds of audio (sans-I/O).

Why this shape: when an outbound call is answered, a person says something short
("Hello?", "Yes, speaking") and waits; a machine plays a long, continuous greeting,
often ending in a beep. Both are visible in frame energies alone, so the detector
needs no model and no network: per 20 ms frame it updates a noise floor, groups
speech frames into utterances (short gaps between words are bridged), and decides

* `machine` — an utterance runs longer than `max_greeting_ms`, or speech adds up to
  more than `max_total_speech_ms`, or a beep (a steady pure tone) is heard;
* `human` — an utterance of at most `max_greeting_ms` is followed by
  `after_greeting_silence_ms` of silence;
* `unknown` — nothing was said for `max_initial_silence_ms`, or the analysis window
  ended undecided; callers treat it as a person who waits for us to speak.

After a `machine` verdict the detector keeps listening so that a message can be
left at the right moment: `ready_for_message` turns true at the beep, or once the
greeting has been followed by `message_after_silence_ms` of silence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["AmdSettings", "AmdVerdict", "AnsweringMachineDetector"]

_FRAME_MS = 20


@dataclass(frozen=True)
class AmdSettings:
    """Thresholds (milliseconds unless named otherwise); defaults tuned on phone speech."""

    max_initial_silence_ms: int = 4000
    max_greeting_ms: int = 1800
    after_greeting_silence_ms: int = 700
    max_total_speech_ms: int = 2600
    #: Silences shorter than this inside an utterance are pauses between words.
    word_gap_ms: int = 320
    #: An utterance must have this much speech to count (clicks and pops do not).
    min_utterance_ms: int = 100
    analysis_ms: int = 6000
    #: After a machine verdict without a beep: this much silence means "speak now".
    message_after_silence_ms: int = 1200
    #: Speech is this many dB above the noise floor, and above `speech_floor_dbfs`.
    speech_margin_db: float = 12.0
    speech_floor_dbfs: float = -45.0
    #: A beep: one spectral peak holding this share of the energy, for this long.
    beep_tonality: float = 0.8
    beep_min_ms: int = 120
    beep_low_hz: float = 300.0
    beep_high_hz: float = 2500.0


@dataclass(frozen=True)
class AmdVerdict:
    """What was decided, why, and after how many milliseconds of callee audio."""

    kind: str  # "human", "machine" or "unknown"
    reason: str
    decided_ms: int


class AnsweringMachineDetector:
    """Feed 20 ms frames of the callee's audio from the moment of answer."""

    def __init__(self, sample_rate: int, settings: AmdSettings | None = None) -> None:
        self.rate = sample_rate
        self.settings = settings or AmdSettings()
        self.verdict: AmdVerdict | None = None
        self.beep_at_ms: int | None = None
        self.ready_for_message = False
        self._elapsed_ms = 0
        self._noise_dbfs = -60.0
        self._heard_speech = False
        self._utterance_ms = 0  # speech + bridged gaps of the current utterance
        self._utterance_speech_ms = 0
        self._gap_ms = 0
        self._total_speech_ms = 0
        self._in_utterance = False
        self._tone_run_ms = 0
        self._tone_bin: int | None = None
        self._silence_after_machine_ms = 0
        size = sample_rate * _FRAME_MS // 1000
        self._window = np.hanning(size).astype(np.float32)
        freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
        self._tone_bins = (freqs >= self.settings.beep_low_hz) & (
            freqs <= self.settings.beep_high_hz
        )

    @property
    def elapsed_ms(self) -> int:
        return self._elapsed_ms

    def feed(self, frame: NDArray[np.int16]) -> AmdVerdict | None:
        """One frame in; returns the verdict on the frame that decides it (once)."""
        s = self.settings
        self._elapsed_ms += _FRAME_MS
        samples = frame.astype(np.float32)
        power = float(np.mean(samples * samples)) if samples.size else 0.0
        dbfs = 10.0 * np.log10(power / (32768.0 * 32768.0) + 1e-12)
        speech = dbfs > max(s.speech_floor_dbfs, self._noise_dbfs + s.speech_margin_db)
        if not speech:
            # Follow the floor down fast and up slowly, so speech never raises it much.
            rate = 0.3 if dbfs < self._noise_dbfs else 0.02
            self._noise_dbfs += rate * (dbfs - self._noise_dbfs)
        if self._is_beep(samples, dbfs):
            if self.beep_at_ms is None:
                self.beep_at_ms = self._elapsed_ms
            self.ready_for_message = self.verdict is not None and self.verdict.kind == "machine"
            if self.verdict is None:
                return self._decide("machine", "beep")
        self._track(speech)
        if self.verdict is not None:
            self._after_verdict(speech)
            return None
        return self._rules()

    # ------------------------------------------------------------------ internals

    def _track(self, speech: bool) -> None:
        s = self.settings
        if speech:
            self._heard_speech = True
            self._total_speech_ms += _FRAME_MS
            if not self._in_utterance:
                self._in_utterance = True
                self._utterance_ms = 0
                self._utterance_speech_ms = 0
                self._gap_ms = 0
            self._utterance_ms += self._gap_ms + _FRAME_MS
            self._utterance_speech_ms += _FRAME_MS
            self._gap_ms = 0
        else:
            self._gap_ms += _FRAME_MS
            if self._in_utterance and self._gap_ms > s.word_gap_ms:
                self._in_utterance = False

    def _rules(self) -> AmdVerdict | None:
        s = self.settings
        if self._utterance_ms > s.max_greeting_ms and self._in_utterance:
            return self._decide("machine", "long_greeting")
        if self._total_speech_ms > s.max_total_speech_ms:
            return self._decide("machine", "much_speech")
        if (
            self._heard_speech
            and not self._in_utterance
            and self._utterance_speech_ms >= s.min_utterance_ms
            and self._gap_ms >= s.after_greeting_silence_ms
        ):
            return self._decide("human", "short_greeting")
        if not self._heard_speech and self._elapsed_ms >= s.max_initial_silence_ms:
            return self._decide("unknown", "silence")
        if self._elapsed_ms >= s.analysis_ms:
            return self._decide("unknown", "undecided")
        if 0 < self._utterance_speech_ms < s.min_utterance_ms and not self._in_utterance:
            # A click or a pop: forget it, it was not an utterance.
            self._total_speech_ms -= self._utterance_speech_ms
            self._utterance_ms = self._utterance_speech_ms = 0
            self._heard_speech = self._total_speech_ms > 0
        return None

    def _after_verdict(self, speech: bool) -> None:
        if self.verdict is None or self.verdict.kind != "machine" or self.ready_for_message:
            return
        self._silence_after_machine_ms = 0 if speech else self._silence_after_machine_ms + _FRAME_MS
        if self._silence_after_machine_ms >= self.settings.message_after_silence_ms:
            self.ready_for_message = True

    def _decide(self, kind: str, reason: str) -> AmdVerdict:
        self.verdict = AmdVerdict(kind, reason, self._elapsed_ms)
        if kind == "machine" and reason == "beep":
            self.ready_for_message = True
        return self.verdict

    def _is_beep(self, samples: NDArray[np.float32], dbfs: float) -> bool:
        """A steady pure tone: one peak (with its neighbours) holding most of the energy."""
        s = self.settings
        if dbfs < s.speech_floor_dbfs or samples.size != self._window.size:
            self._tone_run_ms = 0
            self._tone_bin = None
            return False
        spectrum = np.abs(np.fft.rfft(samples * self._window)) ** 2
        total = float(spectrum.sum()) + 1e-9
        candidates = np.where(self._tone_bins, spectrum, 0.0)
        peak = int(np.argmax(candidates))
        share = float(spectrum[max(0, peak - 1) : peak + 2].sum()) / total
        steady = self._tone_bin is None or abs(peak - self._tone_bin) <= 1
        if share >= s.beep_tonality and steady:
            self._tone_run_ms += _FRAME_MS
            self._tone_bin = peak
        else:
            self._tone_run_ms = 0
            self._tone_bin = peak if share >= s.beep_tonality else None
        return self._tone_run_ms >= s.beep_min_ms
