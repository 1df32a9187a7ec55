"""Render the booking-line demo's speech with espeak-ng and sox, and write its manifest.

The WAVs in `telephony_agent/samples/booking/` are committed so the demo, the local
backend and the tests need neither tool; this script is how anyone rebuilds them (a new
phrase, another voice) with the same settings: 16 kHz mono PCM16, leading and trailing
silence trimmed, peak-normalised to -3 dBFS, no dither (so a re-render is reproducible).
Agent and caller use different voices, so a listener can tell the two sides apart.

Usage: python3 scripts/render_booking_speech.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SAMPLE_RATE = 16000
AGENT_VOICE = "en-us"
CALLER_VOICE = "en-gb+f3"
AGENT_WPM = 160
CALLER_WPM = 150
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "telephony_agent" / "samples" / "booking"


@dataclass(frozen=True)
class Phrase:
    id: str
    text: str
    speaker: str
    """agent | caller"""


NUMBER_WORDS = (
    *("zero", "one", "two", "three", "four", "five", "six"),
    *("seven", "eight", "nine", "ten", "eleven", "twelve"),
)

PHRASES: tuple[Phrase, ...] = (
    # The greeting and the keypad prompt are two fragments each: one file would run
    # past four seconds, and the backend composes fragments anyway.
    Phrase(
        "greeting_hello",
        "Hello, you have reached the Riverside restaurant booking line.",
        "agent",
    ),
    Phrase("greeting_help", "How can I help you?", "agent"),
    Phrase("one_moment", "One moment, let me check.", "agent"),
    Phrase("table_for", "We have a table for", "agent"),
    Phrase("people", "people", "agent"),
    Phrase("person", "person", "agent"),
    Phrase("today_at", "today at", "agent"),
    Phrase("tomorrow_at", "tomorrow at", "agent"),
    Phrase("in_the_evening", "in the evening", "agent"),
    Phrase("shall_i_book", "Shall I book it?", "agent"),
    Phrase("keypad_digits", "Please type the last four digits of your phone number", "agent"),
    Phrase("keypad_hash", "on the keypad, then press hash.", "agent"),
    Phrase("confirmed", "Your booking is confirmed. Your reference is", "agent"),
    Phrase("goodbye", "Thank you for calling. Goodbye.", "agent"),
    Phrase("sorry_again", "Sorry, I did not catch that. Could you say it again?", "agent"),
    Phrase("sorry_taken", "Sorry, that time is taken.", "agent"),
    *(Phrase(f"number_{word}", word, "agent") for word in NUMBER_WORDS),
    Phrase(
        "caller_booking_request",
        "I would like to book a table for two tomorrow at seven.",
        "caller",
    ),
    Phrase("caller_yes", "Yes, please.", "caller"),
)


def _voice(phrase: Phrase) -> tuple[str, int]:
    return (CALLER_VOICE, CALLER_WPM) if phrase.speaker == "caller" else (AGENT_VOICE, AGENT_WPM)


def render(phrase: Phrase, out_dir: Path, scratch: Path) -> float:
    """One phrase to `<id>.wav`; returns its duration in seconds."""
    voice, wpm = _voice(phrase)
    raw = scratch / f"{phrase.id}.raw.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), phrase.text], check=True
    )
    target = out_dir / f"{phrase.id}.wav"
    # rate first (sox's own HQ resampler), then trim both ends (reverse trick), a few ms
    # of pad so no onset is clipped, and peak normalisation; -D: no dither.
    subprocess.run(
        [
            "sox", "-D", "-V1", str(raw), "-b", "16", "-c", "1", str(target),
            "rate", "-v", str(SAMPLE_RATE),
            "silence", "1", "0.01", "-50d", "reverse", "silence", "1", "0.01", "-50d", "reverse",
            "pad", "0.03", "0.03",
            "gain", "-n", "-3",
        ],
        check=True,
    )  # fmt: skip
    info = subprocess.run(["soxi", "-D", str(target)], check=True, capture_output=True, text=True)
    return float(info.stdout.strip())


def manifest(phrases: tuple[Phrase, ...]) -> dict[str, object]:
    entries = []
    for phrase in phrases:
        voice, wpm = _voice(phrase)
        entries.append(
            {
                "id": phrase.id,
                "file": f"{phrase.id}.wav",
                "text": phrase.text,
                "speaker": phrase.speaker,
                "voice": voice,
                "rate": wpm,
                "sample_rate": SAMPLE_RATE,
            }
        )
    return {
        "description": "Speech of the offline booking-line demo (espeak-ng, sox); "
        "rate is words per minute, sample_rate is Hz.",
        "phrases": entries,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    for tool in ("espeak-ng", "sox", "soxi"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (apt-get install espeak-ng sox)", file=sys.stderr)
            return 1
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    total = 0.0
    with tempfile.TemporaryDirectory() as scratch:
        for phrase in PHRASES:
            seconds = render(phrase, out_dir, Path(scratch))
            total += seconds
            print(f"{phrase.id:24} {seconds:5.2f} s  {phrase.text}")
    text = json.dumps(manifest(PHRASES), indent=2, ensure_ascii=False) + "\n"
    (out_dir / "phrases.json").write_text(text, encoding="utf-8")
    print(f"{len(PHRASES)} phrases, {total:.1f} s in total, written to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
