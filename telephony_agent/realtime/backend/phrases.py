"""The booking line's recorded phrases: manifest, WAVs, and joining fragments into a reply.

The speech is rendered once (espeak-ng and sox, `scripts/render_booking_speech.py`) and
shipped in `telephony_agent/samples/booking/` with a `phrases.json` manifest, so the
backend speaks real words with no speech engine installed. Replies that carry values
("a table for two people") are composed from fragments, which is what lets the agent
read back exactly what a tool returned.

The agent's fragments are spoken; the caller's phrases are what the demo's softphone
says, and here they are the templates the phrase spotter compares caller turns with.
"""

from __future__ import annotations

import io
import json
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

import numpy as np
import soxr
import structlog
from numpy.typing import NDArray

from telephony_agent.realtime.backend.recognise import PhraseSpotter, make_template

log = structlog.get_logger(__name__)

MANIFEST = "phrases.json"
GAP_MS = 60
"""Silence between composed fragments: enough to hear word boundaries, short enough
that "table for / two / people" still sounds like one sentence."""
SPEAKERS = ("agent", "caller")


class PhraseError(ValueError):
    """The phrase assets are missing or malformed; the message names the file."""


@dataclass(frozen=True)
class Phrase:
    id: str
    text: str
    speaker: str
    pcm: NDArray[np.int16]
    """Mono PCM16 at the book's rate."""


class PhraseBook:
    """All phrases of one manifest, at one sample rate."""

    def __init__(self, phrases: Mapping[str, Phrase], rate: int) -> None:
        self._phrases = dict(phrases)
        self.rate = rate

    def __getitem__(self, phrase_id: str) -> Phrase:
        return self._phrases[phrase_id]

    def __contains__(self, phrase_id: object) -> bool:
        return phrase_id in self._phrases

    def __len__(self) -> int:
        return len(self._phrases)

    def spoken_by(self, speaker: str) -> tuple[Phrase, ...]:
        return tuple(p for p in self._phrases.values() if p.speaker == speaker)

    def compose(
        self, phrase_ids: Sequence[str], output_rate: int, gap_ms: int = GAP_MS
    ) -> NDArray[np.int16]:
        """The fragments in order with `gap_ms` of silence between them, resampled once
        (soxr HQ) to `output_rate`, so no fragment boundary gets its own filter edge."""
        if not phrase_ids:
            return np.zeros(0, dtype=np.int16)
        gap = np.zeros(self.rate * gap_ms // 1000, dtype=np.int16)
        pieces: list[NDArray[np.int16]] = []
        for i, phrase_id in enumerate(phrase_ids):
            if i:
                pieces.append(gap)
            pieces.append(self[phrase_id].pcm)
        joined = np.concatenate(pieces)
        if output_rate == self.rate:
            return joined
        out: NDArray[np.int16] = soxr.resample(joined, self.rate, output_rate, quality="HQ")
        return out


def _read_wav(data: bytes, name: str, rate: int) -> NDArray[np.int16]:
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            shape = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise PhraseError(f"{name}: not a PCM WAV file ({exc})") from exc
    if shape != (1, 2, rate):
        raise PhraseError(
            f"{name}: {shape[0]} channel(s), {8 * shape[1]} bit, {shape[2]} Hz: "
            f"expected mono 16-bit at {rate} Hz"
        )
    pcm = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if len(pcm) == 0:
        raise PhraseError(f"{name}: no audio")
    return pcm


def _entry(index: int, raw: Any) -> tuple[str, str, str, str, int]:
    where = f"{MANIFEST}: phrases[{index}]"
    if not isinstance(raw, dict):
        raise PhraseError(f"{where} = {raw!r}: expected an object")
    fields = []
    for key in ("id", "file", "text", "speaker"):
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            raise PhraseError(f"{where}.{key} = {value!r}: expected a non-empty string")
        fields.append(value)
    if fields[3] not in SPEAKERS:
        raise PhraseError(f"{where}.speaker = {fields[3]!r}: expected agent or caller")
    rate = raw.get("sample_rate")
    if not isinstance(rate, int) or isinstance(rate, bool) or not 8000 <= rate <= 48000:
        raise PhraseError(f"{where}.sample_rate = {rate!r}: expected 8000 to 48000 (Hz)")
    return fields[0], fields[1], fields[2], fields[3], rate


def load_phrase_book(folder: Traversable) -> PhraseBook:
    """Read `phrases.json` and every WAV it names; all phrases must share one rate."""
    try:
        manifest = json.loads(folder.joinpath(MANIFEST).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PhraseError(f"{MANIFEST}: cannot be read ({exc.strerror or exc})") from exc
    except json.JSONDecodeError as exc:
        raise PhraseError(f"{MANIFEST}: not JSON ({exc})") from exc
    entries = manifest.get("phrases") if isinstance(manifest, dict) else None
    if not isinstance(entries, list) or not entries:
        raise PhraseError(f"{MANIFEST}: phrases: expected a non-empty list")
    phrases: dict[str, Phrase] = {}
    book_rate: int | None = None
    for index, raw in enumerate(entries):
        phrase_id, file_name, text, speaker, rate = _entry(index, raw)
        if book_rate is not None and rate != book_rate:
            raise PhraseError(
                f"{MANIFEST}: phrases[{index}].sample_rate = {rate}: expected {book_rate}, "
                "like the phrases before it"
            )
        if phrase_id in phrases:
            raise PhraseError(f"{MANIFEST}: phrases[{index}].id = {phrase_id!r}: duplicate id")
        book_rate = rate
        try:
            data = folder.joinpath(file_name).read_bytes()
        except OSError as exc:
            raise PhraseError(f"{file_name}: cannot be read ({exc.strerror or exc})") from exc
        phrases[phrase_id] = Phrase(phrase_id, text, speaker, _read_wav(data, file_name, rate))
    assert book_rate is not None
    return PhraseBook(phrases, book_rate)


def booking_folder() -> Traversable:
    return files("telephony_agent").joinpath("samples", "booking")


@cache
def booking_phrases() -> PhraseBook:
    """The shipped booking-line phrases, read once per process."""
    return load_phrase_book(booking_folder())


def spotter_for(book: PhraseBook) -> PhraseSpotter:
    """A spotter that knows the book's caller phrases."""
    return PhraseSpotter(
        make_template(p.id, p.text, p.pcm, book.rate) for p in book.spoken_by("caller")
    )


@cache
def caller_phrase_spotter() -> PhraseSpotter:
    """The spotter every backend session uses for its input transcripts.

    Missing or broken assets only cost the transcripts their words, so this degrades to
    a spotter that knows nothing (with a warning) instead of failing every connection;
    the booking behaviour, which cannot work without them, fails at backend start.
    """
    try:
        return spotter_for(booking_phrases())
    except (PhraseError, ValueError) as exc:
        log.warning("caller_phrases_unavailable", error=str(exc))
        return PhraseSpotter(())
