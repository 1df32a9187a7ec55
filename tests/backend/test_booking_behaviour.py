"""The booking line on the sans-I/O backend session, and the caller phrase spotter.

Caller audio goes through what the demo's caller really goes through before the backend
hears it: the shipped phrase resampled to 8 kHz, 6 dB quieter, G.711 μ-law, the agent's
inbound resampler to 24 kHz, and silence before and after. Time is fake and the
session is polled directly, so the whole conversation runs in well under a second.
"""

from __future__ import annotations

import base64
import json
import re
import wave
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
from numpy.typing import NDArray

from telephony_agent.audio import g711
from telephony_agent.audio.resample import InboundResampler
from telephony_agent.audio.wav import read_wav
from telephony_agent.demo_tools.booking import Restaurant
from telephony_agent.realtime.backend import BackendOptions, BackendStats, start_backend
from telephony_agent.realtime.backend.booking_behaviour import join_text
from telephony_agent.realtime.backend.outbox import CloseConnection
from telephony_agent.realtime.backend.phrases import (
    GAP_MS,
    PhraseError,
    booking_folder,
    booking_phrases,
    caller_phrase_spotter,
    load_phrase_book,
)
from telephony_agent.realtime.backend.session import BackendSession

from .backend_wire import FAST, RATE, WireClient, silence, speech_like

BOOK = booking_phrases()
REQUEST_TEXT = "I would like to book a table for two tomorrow at seven."
YES_TEXT = "Yes, please."
GREETING = "Hello, you have reached the Riverside restaurant booking line. How can I help you?"
SORRY = "Sorry, I did not catch that. Could you say it again?"
KEYPAD = "Please type the last four digits of your phone number on the keypad, then press hash."
CHECK_ARGS = {"party_size": 2, "day": "tomorrow", "time": "19:00"}


def over_the_phone(
    pcm: NDArray[np.int16], rate: int, *, law: str = "ulaw", soxr_up: bool = False
) -> NDArray[np.int16]:
    """8 kHz, -6 dB, G.711 and back, up to 24 kHz, 0.3 s of silence before, 0.8 s after."""
    narrow = soxr.resample(pcm.astype(np.float64), rate, 8000, quality="HQ") * 10 ** (-6 / 20)
    pcm8 = np.clip(np.round(narrow), -32768, 32767).astype(np.int16)
    if law == "ulaw":
        pcm8 = g711.ulaw_decode(g711.ulaw_encode(pcm8))
    else:
        pcm8 = g711.alaw_decode(g711.alaw_encode(pcm8))
    if soxr_up:
        wide: NDArray[np.int16] = soxr.resample(pcm8, 8000, RATE, quality="HQ")
    else:
        up = InboundResampler(8000, RATE)
        frames = [up.process(pcm8[i : i + 160]) for i in range(0, len(pcm8) - 159, 160)]
        wide = np.concatenate(frames)
    return np.concatenate([silence(300), wide, silence(800)])


def caller_says(phrase_id: str) -> NDArray[np.int16]:
    return over_the_phone(BOOK[phrase_id].pcm, BOOK.rate)


class Line:
    """One backend connection with fake time; `sent` is every event it sent, in order."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("realtime_factor", FAST)
        self.session = BackendSession(
            BackendOptions(behaviour="booking", **options), BackendStats()
        )
        self.now = 0.0
        self.sent: list[dict[str, Any]] = []
        self.session.start(self.now)
        self.settle()

    def send(self, kind: str, **fields: Any) -> None:
        self.session.receive_text(json.dumps({"type": kind, **fields}))
        self.settle()

    def settle(self) -> None:
        """Advance fake time until nothing more is scheduled."""
        while True:
            frames, deadline = self.session.poll(self.now)
            for frame in frames:
                assert not isinstance(frame, CloseConnection)
                if isinstance(frame, str):
                    self.sent.append(json.loads(frame))
            if deadline is None:
                return
            self.now = max(self.now, deadline)

    def speak(self, pcm: NDArray[np.int16]) -> None:
        for i in range(0, len(pcm), 480):
            chunk = pcm[i : i + 480].astype("<i2").tobytes()
            self.send("input_audio_buffer.append", audio=base64.b64encode(chunk).decode())

    def mark(self) -> int:
        return len(self.sent)

    def since(self, mark: int, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.sent[mark:] if e["type"] == kind]

    def reply(self, mark: int) -> tuple[str, bytes, list[dict[str, Any]]]:
        """Transcript, audio and function calls of the one response after `mark`."""
        (done,) = self.since(mark, "response.done")
        assert done["response"]["status"] == "completed"
        text = "".join(
            e["delta"] for e in self.since(mark, "response.output_audio_transcript.delta")
        )
        audio = b"".join(
            base64.b64decode(e["delta"]) for e in self.since(mark, "response.output_audio.delta")
        )
        calls = [o for o in done["response"]["output"] if o["type"] == "function_call"]
        return text, audio, calls

    def heard(self, mark: int) -> list[str]:
        return [
            e["transcript"]
            for e in self.since(mark, "conversation.item.input_audio_transcription.completed")
        ]

    def tool_output(self, call_id: str, output: dict[str, Any]) -> None:
        item = {"type": "function_call_output", "call_id": call_id, "output": json.dumps(output)}
        self.send("conversation.item.create", item=item)
        self.send("response.create")


class FakeLogger:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


class FakeContext:
    call_id = "call-1"
    profile = "booking"
    caller = "sip:caller@127.0.0.1"
    dialled = "sip:agent@127.0.0.1"

    def __init__(self) -> None:
        self.variables: dict[str, str] = {}
        self.logger = FakeLogger()


def composed(*phrase_ids: str) -> bytes:
    return BOOK.compose(list(phrase_ids), RATE).astype("<i2").tobytes()


def greeted(line: Line) -> None:
    mark = line.mark()
    line.send("response.create", response={"instructions": "Greet the caller, saying: hi"})
    text, audio, calls = line.reply(mark)
    assert (text, calls) == (GREETING, [])
    assert audio == composed("greeting_hello", "greeting_help")


def typed(line: Line, text: str) -> None:
    content = [{"type": "input_text", "text": text}]
    line.send(
        "conversation.item.create", item={"type": "message", "role": "user", "content": content}
    )
    line.send("response.create")


def asked_for_a_table(line: Line) -> dict[str, Any]:
    mark = line.mark()
    line.speak(caller_says("caller_booking_request"))
    assert line.heard(mark) == [REQUEST_TEXT]
    text, audio, calls = line.reply(mark)
    assert text == "One moment, let me check."
    assert audio == composed("one_moment")
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("check_availability", CHECK_ARGS)
    ]
    return calls[0]


# -- the whole conversation -----------------------------------------------------------------


def test_the_whole_booking_conversation() -> None:
    restaurant, context = Restaurant(), FakeContext()
    line = Line()  # the default session: server VAD, which answers each caller turn
    greeted(line)
    check = asked_for_a_table(line)

    mark = line.mark()
    line.tool_output(check["call_id"], restaurant.check_availability(context, CHECK_ARGS))
    text, audio, calls = line.reply(mark)
    assert (
        text == "We have a table for two people tomorrow at seven in the evening. Shall I book it?"
    )
    assert calls == []
    ids = ("table_for", "number_two", "people", "tomorrow_at", "number_seven")
    assert audio == composed(*ids, "in_the_evening", "shall_i_book")

    mark = line.mark()
    line.speak(caller_says("caller_yes"))
    assert line.heard(mark) == [YES_TEXT]
    text, audio, calls = line.reply(mark)
    assert (text, calls) == (KEYPAD, [])
    assert audio == composed("keypad_digits", "keypad_hash")

    mark = line.mark()
    typed(line, "The caller typed: 4 5 1 2 #")  # how the Call hands over a keypad entry
    text, audio, calls = line.reply(mark)
    assert (text, audio) == ("", b"")
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("make_booking", {**CHECK_ARGS, "phone_last4": "4512"})
    ]

    mark = line.mark()
    booked = restaurant.make_booking(context, json.loads(calls[0]["arguments"]))
    assert booked["reference"] == "1042"
    line.tool_output(calls[0]["call_id"], booked)
    text, audio, calls = line.reply(mark)
    assert text == (
        "Your booking is confirmed. Your reference is 1042. Thank you for calling. Goodbye."
    )
    digits = ("number_one", "number_zero", "number_four", "number_two")
    assert audio == composed("confirmed", *digits, "goodbye")
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("end_call", {"reason": "booking_complete"})
    ]


# -- each stage's other paths ---------------------------------------------------------------


def offered(line: Line) -> None:
    check = asked_for_a_table(line)
    mark = line.mark()
    line.tool_output(check["call_id"], {"available": True, **CHECK_ARGS})
    assert line.reply(mark)[0].startswith("We have a table for two people")


def test_a_response_asked_while_the_check_runs_says_one_moment_and_keeps_waiting() -> None:
    line = Line()
    greeted(line)
    check = asked_for_a_table(line)
    mark = line.mark()
    line.send("response.create", response={"instructions": "Say that you are checking."})
    text, audio, calls = line.reply(mark)
    assert (text, calls) == ("One moment, let me check.", [])
    assert audio == composed("one_moment")
    mark = line.mark()  # the check's output is still the one the line waits for
    line.tool_output(check["call_id"], {"available": True, **CHECK_ARGS})
    assert line.reply(mark)[0].startswith("We have a table for two people")


def test_the_first_response_before_any_speech_is_the_greeting() -> None:
    line = Line()
    mark = line.mark()
    line.send("response.create")
    text, audio, _ = line.reply(mark)
    assert text == GREETING
    assert audio == composed("greeting_hello", "greeting_help")


def test_a_caller_who_speaks_first_is_answered_without_a_greeting() -> None:
    line = Line()
    asked_for_a_table(line)


def test_unknown_speech_is_not_given_words_but_still_asks_for_a_table() -> None:
    line = Line()
    greeted(line)
    mark = line.mark()
    line.speak(np.concatenate([silence(300), speech_like(2000, 5), silence(800)]))
    (heard,) = line.heard(mark)
    assert heard.startswith("[caller speech ") and heard.endswith(" s]")
    text, _, calls = line.reply(mark)
    assert text == "One moment, let me check."
    assert [c["name"] for c in calls] == ["check_availability"]


def test_unknown_audio_while_the_tool_runs_gets_sorry_and_the_stage_stays() -> None:
    line = Line()
    check = asked_for_a_table(line)
    mark = line.mark()
    line.speak(np.concatenate([silence(300), speech_like(1500, 6), silence(800)]))
    (heard,) = line.heard(mark)
    assert heard.startswith("[caller speech ")
    text, audio, calls = line.reply(mark)
    assert (text, calls) == (SORRY, [])
    assert audio == composed("sorry_again")
    mark = line.mark()
    line.tool_output(check["call_id"], {"available": True, **CHECK_ARGS})
    assert line.reply(mark)[0].startswith("We have a table for two people tomorrow at seven")


def test_a_taken_slot_is_said_and_the_caller_may_ask_again() -> None:
    line = Line()
    check = asked_for_a_table(line)
    mark = line.mark()
    line.tool_output(check["call_id"], {"available": False, **CHECK_ARGS})
    text, audio, _ = line.reply(mark)
    assert text == "Sorry, that time is taken."
    assert audio == composed("sorry_taken")
    asked_for_a_table(line)


@pytest.mark.parametrize(
    "output",
    [
        {"error": "day = 'someday': expected today or tomorrow"},
        {"available": True, "party_size": 40, "day": "tomorrow", "time": "19:00"},
        {"available": True, "party_size": 2, "day": "tomorrow", "time": "07:30"},
        "not JSON at all",
    ],
)
def test_a_tool_result_that_cannot_be_read_back_gets_sorry(output: Any) -> None:
    line = Line()
    check = asked_for_a_table(line)
    mark = line.mark()
    text = output if isinstance(output, str) else json.dumps(output)
    item = {"type": "function_call_output", "call_id": check["call_id"], "output": text}
    line.send("conversation.item.create", item=item)
    line.send("response.create")
    assert line.reply(mark)[0] == SORRY
    asked_for_a_table(line)  # back to waiting for the request


def test_the_keypad_stage_waits_for_four_digits() -> None:
    line = Line()
    offered(line)
    mark = line.mark()
    line.speak(caller_says("caller_yes"))
    assert line.reply(mark)[0] == KEYPAD
    for wrong in ("The caller typed: 4 5 #", "The caller typed: nothing"):
        mark = line.mark()
        typed(line, wrong)
        assert line.reply(mark) == (SORRY, composed("sorry_again"), [])
    mark = line.mark()
    line.speak(caller_says("caller_yes"))  # speech is not a keypad entry
    assert line.reply(mark)[0] == SORRY
    mark = line.mark()
    typed(line, "[The caller pressed the keys: 0799124512#]")
    _, _, calls = line.reply(mark)
    assert json.loads(calls[0]["arguments"])["phone_last4"] == "4512"


def test_a_failed_booking_asks_for_the_digits_again() -> None:
    line = Line()
    offered(line)
    line.speak(caller_says("caller_yes"))
    typed(line, "The caller typed: 1 2 3 4 #")
    call_id = line.since(0, "response.done")[-1]["response"]["output"][0]["call_id"]
    mark = line.mark()
    line.tool_output(call_id, {"error": "phone_last4: expected exactly four digits"})
    assert line.reply(mark)[0] == SORRY
    mark = line.mark()
    typed(line, "The caller typed: 9 8 7 6 #")
    _, _, calls = line.reply(mark)
    assert [c["name"] for c in calls] == ["make_booking"]


def test_composed_speech_follows_the_session_output_rate() -> None:
    line = Line()
    output = {
        "type": "realtime",
        "audio": {"output": {"format": {"type": "audio/pcm", "rate": 8000}}},
    }
    line.send("session.update", session=output)
    mark = line.mark()
    line.send("response.create")
    _, audio, _ = line.reply(mark)
    expected = BOOK.compose(["greeting_hello", "greeting_help"], 8000)
    assert audio == expected.astype("<i2").tobytes()
    speech = len(BOOK["greeting_hello"].pcm) + len(BOOK["greeting_help"].pcm)
    at_book_rate = speech + BOOK.rate * GAP_MS // 1000  # one gap between two fragments
    assert len(expected) == pytest.approx(at_book_rate * 8000 / BOOK.rate, abs=2)


def test_join_text_ends_a_sentence_before_the_next_one() -> None:
    assert join_text(["in the evening", "Shall I book it?"]) == "in the evening. Shall I book it?"
    assert join_text(["Hello, you", "How?"]) == "Hello, you. How?"
    assert join_text(["a table for", "two", "people"]) == "a table for two people"
    assert join_text(["Yes.", "No"]) == "Yes. No"


def _input_transcripts(behaviour: str) -> list[str]:
    options = BackendOptions(behaviour=behaviour, realtime_factor=FAST)  # type: ignore[arg-type]
    session = BackendSession(options, BackendStats())
    session.start(0.0)
    pcm = caller_says("caller_yes").astype("<i2").tobytes()
    for i in range(0, len(pcm), 960):
        message = {
            "type": "input_audio_buffer.append",
            "audio": base64.b64encode(pcm[i : i + 960]).decode(),
        }
        session.receive_text(json.dumps(message))
    frames, _ = session.poll(0.0)
    events = [json.loads(f) for f in frames if isinstance(f, str)]
    return [
        e["transcript"]
        for e in events
        if e["type"] == "conversation.item.input_audio_transcription.completed"
    ]


def test_the_booking_behaviour_puts_recognised_words_in_the_input_transcript() -> None:
    assert _input_transcripts("booking") == [YES_TEXT]


def test_other_behaviours_say_only_how_long_the_caller_spoke() -> None:
    (transcript,) = _input_transcripts("echo")
    assert transcript.startswith("[caller speech ") and transcript.endswith(" s]")


def test_the_behaviour_name_is_checked() -> None:
    assert BackendOptions(behaviour="booking").behaviour == "booking"
    with pytest.raises(ValueError, match="echo, tone, script, booking or continuous"):
        BackendOptions(behaviour="bookings")  # type: ignore[arg-type]


async def test_the_booking_line_over_a_websocket() -> None:
    backend = await start_backend(BackendOptions(behaviour="booking", realtime_factor=FAST))
    try:
        async with WireClient.open(backend.url) as client:
            await client.until("session.created")
            await client.send("response.create", response={"instructions": "Greet the caller"})
            events = await client.until("response.done")
    finally:
        await backend.close()
    done = [e for e in events if e["type"] == "response.output_audio_transcript.done"]
    assert [e["transcript"] for e in done] == [GREETING]


# -- the phrase spotter ---------------------------------------------------------------------

SPOTTER = caller_phrase_spotter()


@pytest.mark.parametrize("phrase_id", ["caller_booking_request", "caller_yes"])
@pytest.mark.parametrize(("law", "soxr_up"), [("ulaw", False), ("ulaw", True), ("alaw", False)])
def test_each_caller_phrase_is_spotted_after_the_phone_line(
    phrase_id: str, law: str, soxr_up: bool
) -> None:
    turn = over_the_phone(BOOK[phrase_id].pcm, BOOK.rate, law=law, soxr_up=soxr_up)
    spotted = SPOTTER.spot(turn, RATE)
    assert spotted is not None
    assert (spotted.id, spotted.text) == (phrase_id, BOOK[phrase_id].text)


def _tone(hz: float, ms: int) -> NDArray[np.int16]:
    t = np.arange(RATE * ms // 1000) / RATE
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


def _noise(ms: int) -> NDArray[np.int16]:
    rng = np.random.default_rng(7)
    return (rng.standard_normal(RATE * ms // 1000) * 3000).astype(np.int16)


def _book_flight() -> NDArray[np.int16]:
    pcm, rate = read_wav(str(files("telephony_agent").joinpath("samples", "book_flight.wav")))
    return over_the_phone(pcm, rate)


AGENT_PHRASES = [p.id for p in BOOK.spoken_by("agent")]


@pytest.mark.parametrize("phrase_id", AGENT_PHRASES)
def test_agent_phrases_are_not_taken_for_the_caller(phrase_id: str) -> None:
    assert SPOTTER.spot(over_the_phone(BOOK[phrase_id].pcm, BOOK.rate), RATE) is None


@pytest.mark.parametrize(
    "make",
    [
        _book_flight,
        lambda: over_the_phone(_noise(3000), RATE),
        lambda: over_the_phone(_tone(440.0, 1200), RATE),
        lambda: over_the_phone(_tone(300.0, 3200), RATE),
        lambda: over_the_phone(speech_like(3200, 11), RATE),
        lambda: over_the_phone(speech_like(1200, 12), RATE),
        lambda: over_the_phone(
            BOOK.compose(
                ["table_for", "number_two", "people", "tomorrow_at", "number_seven"], BOOK.rate
            ),
            BOOK.rate,
        ),
        lambda: silence(2000),
        lambda: np.zeros(0, dtype=np.int16),
        lambda: speech_like(100, 3),
    ],
    ids=[
        "book_flight",
        "noise",
        "tone",
        "long_tone",
        "speech_like",
        "short_speech_like",
        "agent_sentence",
        "silence",
        "empty",
        "click",
    ],
)
def test_other_audio_is_not_spotted(make: Any) -> None:
    assert SPOTTER.spot(make(), RATE) is None


def test_a_turn_with_both_phrases_is_neither() -> None:
    both = np.concatenate([caller_says("caller_yes"), caller_says("caller_booking_request")])
    assert SPOTTER.spot(both, RATE) is None


# -- the shipped speech ---------------------------------------------------------------------


def test_the_manifest_describes_every_shipped_file() -> None:
    folder = booking_folder()
    manifest = json.loads(folder.joinpath("phrases.json").read_text(encoding="utf-8"))
    listed = {p["file"] for p in manifest["phrases"]}
    on_disk = {f.name for f in folder.iterdir() if f.name.endswith(".wav")}
    assert listed == on_disk
    total = sum(len(folder.joinpath(name).read_bytes()) for name in listed)
    assert total < 1_500_000
    for entry in manifest["phrases"]:
        assert set(entry) >= {"id", "text", "speaker", "rate", "voice", "sample_rate"}
        assert entry["sample_rate"] == BOOK.rate == 16000
        assert len(BOOK[entry["id"]].pcm) / BOOK.rate < 4.0
    voices = {e["speaker"]: e["voice"] for e in manifest["phrases"]}
    assert voices["agent"] != voices["caller"]
    caller = {p.text for p in BOOK.spoken_by("caller")}
    assert caller == {REQUEST_TEXT, YES_TEXT}


def test_the_shipped_speech_is_trimmed() -> None:
    for phrase_id in (*AGENT_PHRASES, "caller_booking_request", "caller_yes"):
        pcm = BOOK[phrase_id].pcm.astype(np.float64)
        edge = BOOK.rate // 10  # 100 ms
        loudest = np.abs(pcm).max()
        assert np.abs(pcm[:edge]).max() > loudest / 30, phrase_id  # speech within 100 ms
        assert np.abs(pcm[-edge:]).max() > loudest / 30, phrase_id


def _write_book(folder: Path, phrases: list[dict[str, Any]], rate: int = 16000) -> None:
    folder.joinpath("phrases.json").write_text(json.dumps({"phrases": phrases}), "utf-8")
    for entry in phrases:
        with wave.open(str(folder / str(entry["file"])), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes(speech_like(200, 1, rate).tobytes())


def _entry(phrase_id: str, **changes: Any) -> dict[str, Any]:
    entry = {
        "id": phrase_id,
        "file": f"{phrase_id}.wav",
        "text": phrase_id,
        "speaker": "agent",
        "sample_rate": 16000,
    }
    return {**entry, **changes}


def test_a_phrase_book_loads_from_any_folder(tmp_path: Path) -> None:
    _write_book(tmp_path, [_entry("a"), _entry("b", speaker="caller")])
    book = load_phrase_book(tmp_path)
    assert (len(book), book.rate, [p.id for p in book.spoken_by("caller")]) == (2, 16000, ["b"])
    assert len(book.compose(["a", "b"], 16000)) == 2 * 3200 + 16000 * GAP_MS // 1000


@pytest.mark.parametrize(
    ("phrases", "message"),
    [
        ([], "phrases.json: phrases: expected a non-empty list"),
        ([_entry("a", speaker="robot")], "phrases[0].speaker = 'robot': expected agent or caller"),
        ([_entry("a", text="")], "phrases[0].text = '': expected a non-empty string"),
        ([_entry("a"), _entry("a")], "phrases[1].id = 'a': duplicate id"),
        ([_entry("a", sample_rate=4000)], "phrases[0].sample_rate = 4000: expected 8000 to 48000"),
        (
            [_entry("a"), _entry("b", sample_rate=8000)],
            "phrases[1].sample_rate = 8000: expected 16000",
        ),
    ],
)
def test_a_broken_manifest_is_named(
    tmp_path: Path, phrases: list[dict[str, Any]], message: str
) -> None:
    _write_book(tmp_path, [p for p in phrases if p.get("sample_rate") == 16000])
    tmp_path.joinpath("phrases.json").write_text(json.dumps({"phrases": phrases}), "utf-8")
    with pytest.raises(PhraseError, match=re.escape(message)):
        load_phrase_book(tmp_path)


def test_missing_or_mismatched_audio_is_named(tmp_path: Path) -> None:
    _write_book(tmp_path, [_entry("a")], rate=8000)
    with pytest.raises(PhraseError, match=re.escape("a.wav: 1 channel(s), 16 bit, 8000 Hz")):
        load_phrase_book(tmp_path)
    tmp_path.joinpath("a.wav").unlink()
    with pytest.raises(PhraseError, match=re.escape("a.wav: cannot be read")):
        load_phrase_book(tmp_path)
    tmp_path.joinpath("phrases.json").write_text("{not json", "utf-8")
    with pytest.raises(PhraseError, match=re.escape("phrases.json: not JSON")):
        load_phrase_book(tmp_path)
