"""The greeting is asked for once per call, whatever happens around it."""

from __future__ import annotations

from typing import cast

from telephony_agent.call.greeting import Greeting
from telephony_agent.call.playback import Playback
from telephony_agent.call.profile import CallProfile
from telephony_agent.call.record import TranscriptLine
from telephony_agent.call.transcript import TranscriptWriter
from telephony_agent.realtime.client import RealtimeSession


class AsksForResponses:
    def __init__(self) -> None:
        self.asked: list[str | None] = []

    def create_response(self, instructions: str | None = None) -> None:
        self.asked.append(instructions)


def greeting_for(profile: CallProfile) -> tuple[Greeting, AsksForResponses, Playback]:
    session = AsksForResponses()
    playback = Playback(24000, 8000)
    lines: list[TranscriptLine] = []
    writer = TranscriptWriter(lines, lambda: 0, None)
    return Greeting(profile, playback, cast(RealtimeSession, session), writer), session, playback


def test_the_model_greets_once() -> None:
    greeting, session, _ = greeting_for(CallProfile(greeting="Hello"))
    greeting.start()
    greeting.playout_idle()
    greeting.start()
    assert session.asked == ["Greet the caller, saying: Hello"]
    assert greeting.asked


def test_after_the_recording_unless_the_caller_spoke() -> None:
    profile = CallProfile(greeting="Hello", greeting_audio=bytes(4800))
    greeting, session, playback = greeting_for(profile)
    greeting.start()
    assert session.asked == [] and playback.buffer.is_playing
    greeting.playout_idle()
    greeting.playout_idle()
    assert session.asked == ["Greet the caller, saying: Hello"]

    greeting, session, _ = greeting_for(profile)
    greeting.start()
    greeting.caller_spoke()  # talked over the recording: answered, not greeted
    greeting.playout_idle()
    assert session.asked == []


def test_no_greeting_configured() -> None:
    greeting, session, _ = greeting_for(CallProfile())
    greeting.start()
    greeting.playout_idle()
    assert session.asked == [] and not greeting.asked
