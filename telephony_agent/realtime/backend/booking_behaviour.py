"""The booking line: a small restaurant-booking conversation, offline, with real tool calls.

It exists so a newcomer sees the whole shape of a phone agent with no model and no
network: a greeting, a tool call, a reply composed from what the tool returned, a keypad
entry, a second tool call, a read-back of the booking reference, goodbye and `end_call`.
Nothing is understood; each stage only needs the kind of input it waits for (caller
speech, typed digits, a tool output), so any real caller can walk through it too.

Stages, per connection:

1. greeting: a response whose instructions mention greeting, or the first response
   before any caller speech, says the greeting.
2. request: any caller speech (the demo's caller asks for a table for two tomorrow at
   seven) → "One moment, let me check." and `check_availability`.
3. checking: its output → "We have a table for <n> people <day> at <hour> in the
   evening. Shall I book it?" from the output's own values, or "that time is taken".
4. offered: any caller speech (the caller says yes) → the keypad prompt.
5. keypad: a user text message with at least four digits → `make_booking`.
6. booking: its output's reference → confirmation, the reference digit by digit,
   goodbye, and `end_call` in the same response.

A response asked for while a tool call is still unanswered (stages 3 and 6) with no new
input is a caller's client filling the wait ("say that you are checking"): it gets "One
moment, let me check." and the stage stays, so the tool's output is still awaited.

Unexpected input in any stage gets "Sorry, I did not catch that…" and the stage stays.
A tool output that reports an error, or values the phrases cannot say, cannot be
waited out, so it also gets the sorry phrase and moves back to the stage that asks for
the input again. After the booking, anything more gets goodbye and `end_call` again: the
conversation is over, and a client that missed the first `end_call` gets another.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Any

from telephony_agent.realtime.backend.phrases import PhraseBook
from telephony_agent.realtime.backend.turn import (
    FunctionCallSpec,
    ResponseContent,
    ToolOutput,
    TurnInput,
)

CHECK_TOOL = "check_availability"
BOOK_TOOL = "make_booking"
END_TOOL = "end_call"
REQUEST = {"party_size": 2, "day": "tomorrow", "time": "19:00"}
"""What the demo caller asks for; a real caller gets the same (nothing is understood)."""
PHONE_DIGITS = 4
MAX_REFERENCE_DIGITS = 12
_GREETING = re.compile(r"\bgreet", re.IGNORECASE)

NUMBER_WORDS = (
    *("zero", "one", "two", "three", "four", "five", "six"),
    *("seven", "eight", "nine", "ten", "eleven", "twelve"),
)
DAY_PHRASES = {"today": "today_at", "tomorrow": "tomorrow_at"}
EVENING_HOURS = range(17, 24)
"""Hours the shipped "in the evening" fragment can honestly follow."""


class Stage(enum.Enum):
    GREETING = "greeting"
    REQUEST = "request"
    CHECKING = "checking"
    OFFERED = "offered"
    KEYPAD = "keypad"
    BOOKING = "booking"
    DONE = "done"


@dataclass(frozen=True)
class Words:
    """A stretch of speech: the fragments to play and the text the transcript shows."""

    phrase_ids: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Reply:
    words: tuple[Words, ...]
    calls: tuple[FunctionCallSpec, ...] = ()


def call(name: str, arguments: dict[str, Any]) -> FunctionCallSpec:
    return FunctionCallSpec(name, json.dumps(arguments, separators=(",", ":")))


def number_phrase(value: int) -> str:
    return f"number_{NUMBER_WORDS[value]}"


def join_text(pieces: list[str]) -> str:
    """Transcript pieces joined with spaces; a piece that starts a new sentence after one
    that did not end it gets a full stop first."""
    text = ""
    for piece in pieces:
        if text:
            if piece[:1].isupper() and text[-1] not in ".?!,":
                text += "."
            text += " "
        text += piece
    return text


@dataclass(frozen=True)
class Offer:
    """The slot the tool said is free, as the tool itself described it."""

    party_size: int
    day: str
    time: str

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Offer | None:
        """None unless every value can be said with the shipped phrases."""
        size, day, time = data.get("party_size"), data.get("day"), data.get("time")
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 12:
            return None
        if day not in DAY_PHRASES or not isinstance(time, str):
            return None
        match = re.fullmatch(r"(\d{1,2}):00", time)
        if match is None or int(match.group(1)) not in EVENING_HOURS:
            return None
        return cls(size, str(day), time)

    @property
    def hour12(self) -> int:
        return int(self.time.split(":")[0]) - 12

    def arguments(self) -> dict[str, Any]:
        return {"party_size": self.party_size, "day": self.day, "time": self.time}


class BookingBehaviour:
    """One booking conversation; one instance per connection (it holds the stage)."""

    def __init__(self, phrases: PhraseBook) -> None:
        self.phrases = phrases
        self.stage = Stage.GREETING
        self.offer: Offer | None = None

    def respond(self, turn: TurnInput) -> ResponseContent:
        reply = self._reply(turn)
        ids = [phrase_id for words in reply.words for phrase_id in words.phrase_ids]
        audio = self.phrases.compose(ids, turn.output_rate)
        text = join_text([words.text for words in reply.words])
        return ResponseContent(audio, text, reply.calls)

    # -- the stages -------------------------------------------------------------------

    def _reply(self, turn: TurnInput) -> Reply:
        if turn.instructions is not None and _GREETING.search(turn.instructions):
            if self.stage is Stage.GREETING:
                self.stage = Stage.REQUEST
            return Reply((self._say("greeting_hello", "greeting_help"),))
        if turn.tool_output is not None:
            answered = self._on_tool_output(turn.tool_output)
            if answered is not None:
                return answered
        if self.stage is Stage.GREETING:
            self.stage = Stage.REQUEST
            if not turn.has_speech:
                return Reply((self._say("greeting_hello", "greeting_help"),))
        if self.stage is Stage.REQUEST and turn.has_speech:
            self.stage = Stage.CHECKING
            return Reply((self._say("one_moment"),), (call(CHECK_TOOL, REQUEST),))
        if self.stage is Stage.OFFERED and turn.has_speech:
            self.stage = Stage.KEYPAD
            return Reply((self._say("keypad_digits", "keypad_hash"),))
        if self.stage is Stage.KEYPAD and turn.user_text is not None:
            digits = re.sub(r"\D", "", turn.user_text)
            if len(digits) >= PHONE_DIGITS and self.offer is not None:
                self.stage = Stage.BOOKING
                arguments = {**self.offer.arguments(), "phone_last4": digits[-PHONE_DIGITS:]}
                return Reply((), (call(BOOK_TOOL, arguments),))
        if self.stage is Stage.DONE:
            return self._goodbye(())
        if self.stage in (Stage.CHECKING, Stage.BOOKING) and _no_new_input(turn):
            return Reply((self._say("one_moment"),))
        return self._sorry()

    def _on_tool_output(self, output: ToolOutput) -> Reply | None:
        """The reply to a tool's result, or None if this stage was not waiting for it."""
        if output.name == CHECK_TOOL and self.stage is Stage.CHECKING:
            data = _json_object(output.output)
            if data.get("available") is False:
                self.stage = Stage.REQUEST
                return Reply((self._say("sorry_taken"),))
            offer = Offer.parse(data) if data.get("available") is True else None
            if offer is None:
                self.stage = Stage.REQUEST
                return self._sorry()
            self.offer = offer
            self.stage = Stage.OFFERED
            return Reply(self._offer_words(offer))
        if output.name == BOOK_TOOL and self.stage is Stage.BOOKING:
            data = _json_object(output.output)
            if data.get("available") is False:
                self.stage = Stage.REQUEST
                return Reply((self._say("sorry_taken"),))
            reference = data.get("reference")
            if not isinstance(reference, str) or not _speakable_reference(reference):
                self.stage = Stage.KEYPAD
                return self._sorry()
            self.stage = Stage.DONE
            digits = tuple(number_phrase(int(d)) for d in reference)
            return self._goodbye((self._say("confirmed"), Words(digits, reference)))
        return None

    # -- what is said -----------------------------------------------------------------

    def _say(self, *phrase_ids: str) -> Words:
        text = join_text([self.phrases[p].text for p in phrase_ids])
        return Words(phrase_ids, text)

    def _sorry(self) -> Reply:
        return Reply((self._say("sorry_again"),))

    def _goodbye(self, before: tuple[Words, ...]) -> Reply:
        words = (*before, self._say("goodbye"))
        return Reply(words, (call(END_TOOL, {"reason": "booking_complete"}),))

    def _offer_words(self, offer: Offer) -> tuple[Words, ...]:
        size = NUMBER_WORDS[offer.party_size]
        hour = NUMBER_WORDS[offer.hour12]
        return (
            self._say("table_for"),
            Words((number_phrase(offer.party_size),), size),
            self._say("person" if offer.party_size == 1 else "people"),
            self._say(DAY_PHRASES[offer.day]),
            Words((number_phrase(offer.hour12),), hour),
            self._say("in_the_evening"),
            self._say("shall_i_book"),
        )


def _no_new_input(turn: TurnInput) -> bool:
    """Nothing arrived since the last response: no speech, typed text or tool output."""
    return not turn.has_speech and turn.user_text is None and turn.tool_output is None


def _json_object(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _speakable_reference(reference: str) -> bool:
    return reference.isascii() and reference.isdigit() and len(reference) <= MAX_REFERENCE_DIGITS
