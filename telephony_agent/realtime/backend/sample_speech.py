"""The packaged sample speech, and the behaviour that says it over and over.

Why real speech and not a tone: a benchmark of the audio path must carry what a phone
call carries (a tone hides resampler and codec artefacts that speech shows), and the
bench callers compare what they hear with an ideal rendering of exactly this audio.
"""

from __future__ import annotations

import functools
import wave
from importlib.resources import files

import numpy as np
import soxr
from numpy.typing import NDArray

from telephony_agent.realtime.backend.turn import ResponseContent, TurnInput

SAMPLE_NAME = "book_flight.wav"
SAMPLE_RATE = 24000
"""The packaged sample is PCM16 mono at this rate."""


@functools.cache
def sample_speech(rate: int = SAMPLE_RATE) -> NDArray[np.int16]:
    """The packaged speech sample at `rate` (resampled once, in one pass, then cached)."""
    source = files("telephony_agent").joinpath("samples", SAMPLE_NAME)
    with source.open("rb") as handle, wave.open(handle, "rb") as reader:
        if reader.getsampwidth() != 2 or reader.getnchannels() != 1:
            raise ValueError(f"{SAMPLE_NAME} must be PCM16 mono")
        source_rate = reader.getframerate()
        pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    pcm = pcm.astype(np.int16)
    if source_rate != rate:
        pcm = np.asarray(soxr.resample(pcm, source_rate, rate, quality="HQ"), dtype=np.int16)
    pcm.setflags(write=False)
    return pcm


class ContinuousBehaviour:
    """Every response is the whole sample: what a response says never depends on input."""

    def respond(self, turn: TurnInput) -> ResponseContent:
        return ResponseContent(sample_speech(turn.output_rate), "Sample speech.")
