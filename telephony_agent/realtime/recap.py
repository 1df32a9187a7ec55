"""What was said so far, kept to be replayed to a replacement Realtime session.

Why: a provider's conversation lives only as long as its websocket. When the session is
replaced (a lost connection, an expired session, a planned rollover), the new one knows
nothing, so the client replays the conversation as one message. The recap says what
the caller actually heard: both sides in the order they spoke (a caller's words take
the place of their turn even when the transcript arrives after the answer), an agent
line cut to the part that was played when a barge-in or a lost connection stopped it,
and tool results the model based its answers on. It is bounded (lines and characters):
a long call must not grow state or the replayed message.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field

HEADER = (
    "The phone call is already in progress; continue it without greeting the caller "
    "again. Conversation so far:"
)
#: One tool result in the recap is cut to this many characters.
MAX_TOOL_CHARS = 300


def cut_text(text: str, fraction: float) -> str:
    """The part of `text` a caller heard when the audio stopped at `fraction` of it,
    ended on a word boundary (never mid-word), with an ellipsis."""
    fraction = min(max(fraction, 0.0), 1.0)
    if fraction >= 1.0:
        return text
    keep = int(len(text) * fraction)
    head = text[:keep]
    mid_word = head[-1:].isalnum() and text[keep : keep + 1].isalnum()
    if mid_word:  # drop the word the audio stopped in
        head = head.rsplit(None, 1)[0] if " " in head.strip() else ""
    head = head.rstrip(" ,;:-")
    return f"{head}…" if head else "…"


@dataclass
class _Line:
    speaker: str
    parts: list[str] = field(default_factory=list)
    final: str | None = None
    heard: float | None = None  # fraction heard, when a barge-in or lost link cut it

    def text(self) -> str:
        text = (self.final if self.final is not None else "".join(self.parts)).strip()
        if self.heard is not None and text:
            text = "" if self.heard <= 0.0 else cut_text(text, self.heard)
        return text


class Recap:
    """Both sides of the conversation in order, the last `max_lines` of it."""

    def __init__(self, max_lines: int = 12, max_chars: int = 4000) -> None:
        self.max_lines = max(0, max_lines)
        self.max_chars = max_chars
        self._lines: OrderedDict[str, _Line] = OrderedDict()
        self._notes = 0

    def _slot(self, key: str, speaker: str) -> _Line:
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = _Line(speaker)
            while len(self._lines) > self.max_lines:
                self._lines.popitem(last=False)
        return line

    def caller_turn(self, item_id: str | None) -> None:
        """The caller finished a turn: their words, when transcribed, go here."""
        if item_id:
            self._slot(item_id, "Caller")

    def caller_said(self, item_id: str | None, text: str) -> None:
        if text.strip():
            self._slot(item_id or self._note_key(), "Caller").final = text

    def agent_text(self, item_id: str, delta: str) -> None:
        """A piece of the agent's text (or its first audio, with an empty delta)."""
        self._slot(item_id, "Agent").parts.append(delta)

    def agent_said(self, item_id: str, text: str) -> None:
        self._slot(item_id, "Agent").final = text

    def heard(self, item_id: str, fraction: float) -> None:
        """The caller heard `fraction` of this agent item (a barge-in or a lost link)."""
        line = self._lines.get(item_id)
        if line is not None and line.speaker == "Agent":
            line.heard = fraction if line.heard is None else min(line.heard, fraction)

    def note(self, speaker: str, text: str) -> None:
        """A line that is not a spoken turn: a text message, a tool result."""
        if text.strip():
            self._slot(self._note_key(), speaker).final = text

    def tool_result(self, name: str, output: str) -> None:
        short = output if len(output) <= MAX_TOOL_CHARS else output[: MAX_TOOL_CHARS - 1] + "…"
        self.note(f"Tool {name} returned", short)

    def _note_key(self) -> str:
        self._notes += 1
        return f"\x00note{self._notes}"

    @property
    def lines(self) -> list[tuple[str, str]]:
        """(speaker, text) in conversation order, blank lines left out."""
        out = [(line.speaker, line.text()) for line in self._lines.values()]
        return [(speaker, text) for speaker, text in out if text]

    def text(self, leave_out: Collection[str] = ()) -> str | None:
        """The header and the newest lines that fit the character budget; None if none.

        `leave_out`: caller items whose audio is being sent again (their words would
        otherwise reach the new session twice).
        """
        rendered: list[str] = []
        budget = self.max_chars - len(HEADER) - 1
        for key, line in reversed(self._lines.items()):
            if key in leave_out:
                continue
            text = line.text()
            if not text:
                continue
            entry = f"{line.speaker}: {' '.join(text.split())}"
            if len(entry) + 1 > budget:
                break
            rendered.append(entry)
            budget -= len(entry) + 1
        if not rendered:
            return None
        return HEADER + "\n" + "\n".join(reversed(rendered))
