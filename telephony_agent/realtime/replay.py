"""What a replacement session must be told again so that the caller loses nothing.

Why: when a Realtime session is replaced (a lost connection, an expired session, a
planned rollover), the new session has heard nothing. A caller who asked a question a
moment before must still get one answer, and one who was heard must not be answered
twice. This ledger keeps, without I/O:

* the caller's audio since the model last answered, as the appended chunks, bounded
  (`max_chunks`), so an unanswered question (or one still being spoken) can be sent
  again to the new session;
* whether an answer is owed: a caller turn was committed, or a tool output or a user
  message was added, and no response to it has finished (or been heard) since.

A response that ended because its connection died only settles what was owed if the
caller heard some of it (the consumer says so with `heard`); when the consumer never
says, received audio counts as heard, so a consumer that does not play audio is never
answered twice.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

Owed = Literal["caller", "input"]


@dataclass(frozen=True)
class Replay:
    """What to send again after the recap: caller audio, then whether to ask an answer."""

    audio: tuple[bytes, ...]
    #: The owed input is a caller turn whose audio is in `audio`.
    caller_turn: bool
    #: An answer is owed and the audio alone will not bring it (manual turns, or the
    #: owed input was a tool output or a message): send `response.create`.
    ask_response: bool
    #: The committed caller item whose words the replayed audio repeats.
    replayed_item: str | None


class CallerReplay:
    """The caller's unanswered audio and the answer owed; see the module docstring."""

    def __init__(self, max_chunks: int, lead_chunks: int) -> None:
        self._chunks: deque[bytes] = deque(maxlen=max(1, max_chunks))
        self._lead = max(0, lead_chunks)
        self._next = 0  # sequence number of the next chunk
        self._keep_from = 0  # chunks before this sequence number may be forgotten
        self.speaking = False
        self._speech_from = 0
        self.owed: Owed | None = None
        self.owed_item: str | None = None
        self._answering: str | None = None
        self._unconfirmed: str | None = None  # answer cut by a lost link, heard unknown
        self._heard_reported = False

    # ------------------------------------------------------------------ audio

    def append(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._next += 1

    @property
    def held_chunks(self) -> int:
        """Chunks held now (what a replay would send)."""
        self._forget()
        return len(self._chunks)

    def _forget(self) -> None:
        first = self._next - len(self._chunks)
        drop = min(len(self._chunks), max(0, self._keep_from - first))
        for _ in range(drop):
            self._chunks.popleft()

    def _keep_last(self, start: int) -> None:
        self._keep_from = max(self._keep_from, start - self._lead)

    # ------------------------------------------------------------------ the caller

    def speech_started(self) -> None:
        if not self.speaking:
            self.speaking = True
            self._speech_from = self._next
            if self.owed is None:
                self._keep_last(self._next)

    def turn_committed(self, item_id: str | None) -> None:
        """The caller's turn ended (server VAD stop or commit, or our own commit)."""
        self.speaking = False
        if self.owed != "caller" or item_id != self.owed_item or self._answering is not None:
            self.owed = "caller"
            self.owed_item = item_id
            self._answering = None

    def input_added(self) -> None:
        """A tool output or a user message: the model owes an answer to it."""
        if self.owed != "caller" or self._answering is not None:
            self.owed = "input"
            self.owed_item = None
            self._answering = None

    # ------------------------------------------------------------------ the model

    def response_created(self, response_id: str) -> None:
        if self.owed is not None and self._answering is None:
            self._answering = response_id

    def response_done(self, response_id: str) -> None:
        """A response really ended on the server (any status): what it answered is settled."""
        if response_id == self._answering:
            self._settle()

    def link_lost(self, response_id: str | None, had_audio: bool) -> None:
        """The connection died; `response_id` was in flight (with audio received or not)."""
        if response_id is not None and response_id == self._answering and had_audio:
            self._unconfirmed = response_id
            self._heard_reported = False
        elif self._unconfirmed is None:
            self._answering = None
        if self.owed is None and not self.speaking:
            self._keep_last(self._next)

    def heard(self, response_id: str | None, heard_ms: int) -> None:
        """The consumer says how much of a cut answer the caller heard."""
        if response_id is None or response_id != self._unconfirmed:
            return
        self._heard_reported = True
        if heard_ms > 0:
            self._settle()

    def _settle(self) -> None:
        self.owed = None
        self.owed_item = None
        self._answering = None
        self._unconfirmed = None
        self._keep_last(self._speech_from if self.speaking else self._next)

    # ------------------------------------------------------------------ decisions

    @property
    def settled(self) -> bool:
        """Nothing owed and the caller not speaking: nothing a new session could miss."""
        return self.owed is None and not self.speaking

    def replay(self, *, server_vad: bool) -> Replay:
        """What to send to a replacement session, after its configuration and the recap.

        The audio is everything kept: the owed turn, or the caller speaking now (from a
        little before their speech started), or at least the last moments before the
        switch, so words spoken while no session listened are not lost.
        """
        if self._unconfirmed is not None and not self._heard_reported:
            self._settle()  # nobody said the cut answer went unheard: count it as heard
        self._unconfirmed = None
        self._answering = None
        self._forget()
        audio = tuple(self._chunks)
        caller_turn = self.owed == "caller" and bool(audio)
        ask = self.owed == "input" or (self.owed == "caller" and not (server_vad and audio))
        return Replay(audio, caller_turn, ask, self.owed_item if caller_turn else None)
