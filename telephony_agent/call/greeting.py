"""The call's greeting: a recording, the model's own words, or both, once per call.

Why its own piece: a greeting is asked for exactly once, and nothing else may ask for
it again: not a caller who talks over the recording (they are answered instead), and
not a Realtime session replaced mid-call (the replacement is told the call is already
in progress). Keeping the rule in one small class makes "once" easy to see and test.
"""

from __future__ import annotations

from telephony_agent.call.playback import AnyPlayback
from telephony_agent.call.profile import GREETING_AUDIO_ITEM, GREETING_AUDIO_RATE, CallProfile
from telephony_agent.call.transcript import TranscriptWriter
from telephony_agent.realtime.client import RealtimeSession

__all__ = ["Greeting"]


class Greeting:
    """Plays the greeting recording, then asks the model to greet; never twice."""

    def __init__(
        self,
        profile: CallProfile,
        playback: AnyPlayback,
        session: RealtimeSession,
        lines: TranscriptWriter,
    ) -> None:
        self._profile = profile
        self._playback = playback
        self._session = session
        self._lines = lines
        self._after_audio = False
        self.asked = False

    def start(self) -> None:
        """At call start: the recording (the model greets once it has played), or the model."""
        audio = self._profile.greeting_audio
        if audio:
            self._playback.push_recording(GREETING_AUDIO_ITEM, audio, GREETING_AUDIO_RATE)
            self._after_audio = bool(self._profile.greeting)
            self._lines.say("agent", "[greeting recording]")
        elif self._profile.greeting:
            self._ask()

    def caller_spoke(self) -> None:
        """A caller who talks over the greeting recording is answered, not greeted."""
        self._after_audio = False

    def playout_idle(self) -> None:
        """Nothing is playing any more: the recording, if any, is over."""
        if self._after_audio:
            self._after_audio = False
            self._ask()

    def mark_asked(self) -> None:
        """The model greets on its own (in its answer to a callee's first words)."""
        self.asked = True

    def _ask(self) -> None:
        if self.asked or not self._profile.greeting:
            return
        self.asked = True
        self._session.create_response(
            instructions=f"Greet the caller, saying: {self._profile.greeting}"
        )
