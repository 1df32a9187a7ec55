"""Backchannels: "mm-hm", "yeah", "угу" — words that say "go on", not "stop".

Why words are normalised before comparing: transcription spells the same sound many
ways ("Mm-hmm.", "mhm", "Uh huh", "Да-да"). Letters only, lower case, repeated letters
collapsed ("mmhmm" and "mm-hm" both become "mhm"), a word repeated ("да-да", "ok ok")
is still that word, and one written as two ("uh huh") is still one. Annotations in
brackets ("[noise]", "(laughs)", the local backend's "[caller speech 0.40 s]") are not
words.
"""

from __future__ import annotations

import re

__all__ = [
    "DEFAULT_BACKCHANNELS",
    "is_backchannel",
    "normalise_word",
    "parse_backchannels",
    "words_of",
]

#: The `[turns] backchannels` default, as written in the settings file.
DEFAULT_BACKCHANNELS = "mm-hm, mhm, uh-huh, yeah, ok, okay, угу, ага, да"

_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)")
_TOKEN = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")
_REPEATS = re.compile(r"(.)\1+")


def normalise_word(word: str) -> str:
    """Letters only, lower case, runs of one letter collapsed."""
    letters = "".join(ch for ch in word.lower() if ch.isalpha())
    return _REPEATS.sub(r"\1", letters)


def parse_backchannels(text: str) -> frozenset[str]:
    """The comma-separated setting as normalised words ('' means none)."""
    words = (normalise_word(part) for part in text.split(","))
    return frozenset(word for word in words if word)


def words_of(transcript: str) -> list[str]:
    """The normalised words of a transcript, annotations left out."""
    text = _ANNOTATION.sub(" ", transcript)
    return [w for w in (normalise_word(t) for t in _TOKEN.findall(text)) if w]


def _is_one(word: str, backchannels: frozenset[str]) -> bool:
    if word in backchannels:
        return True
    return any(len(word) % len(b) == 0 and word == b * (len(word) // len(b)) for b in backchannels)


def is_backchannel(transcript: str, backchannels: frozenset[str]) -> bool | None:
    """True: only backchannel words. False: other words too. None: no words at all."""
    words = words_of(transcript)
    if not words:
        return None
    if all(_is_one(word, backchannels) for word in words):
        return True
    # "uh huh", "mm hm": one backchannel written as two words.
    return _is_one(normalise_word("".join(words)), backchannels)
