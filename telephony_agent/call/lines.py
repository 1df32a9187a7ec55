"""Transcript lines as the call happened: agent lines as heard, caller lines per turn.

Why bookkeeping of its own: a model's transcript arrives when it is generated, seconds
before its audio has played, and a barge-in may cut the audio halfway. A record must
say what the caller actually heard, so an agent line is written only once its audio
has played out (or been cut, then with the text cut to match), and placed on the call
clock by the frames that carried it. Caller lines take their times from the provider's
VAD and their words from input transcription; a turn that never got a transcript says
how long the caller spoke, never invented words.

Sans-I/O: the Call feeds events and milliseconds in and emits what comes out. The
per-tick method does one comparison and one assignment.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from telephony_agent.realtime.recap import cut_text

__all__ = ["AgentLines", "CallerLines", "Line", "cut_text"]

#: Items whose line was written are remembered this long (bounded memory on long calls).
_MEMORY = 64
#: A caller turn whose transcript has not come after this long gets a duration-only line.
TRANSCRIPT_WAIT_MS = 15_000


@dataclass(frozen=True)
class Line:
    speaker: str
    text: str
    start_ms: int
    end_ms: int
    truncated: bool = False


@dataclass
class _AgentItem:
    text: list[str] = field(default_factory=list)
    final: str | None = None
    first_ms: int | None = None
    last_ms: int = 0
    audio_done: bool = False
    played_out: bool = False
    cut: float | None = None  # the fraction heard, when a barge-in cut it
    label: str = ""  # put before the text, e.g. "[filler]"


class AgentLines:
    """The agent's lines, each written once its audio has played out or been cut."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, _AgentItem] = OrderedDict()
        self._done: OrderedDict[str, None] = OrderedDict()
        self._current: str | None = None

    def _item(self, item_id: str) -> _AgentItem | None:
        if item_id in self._done:
            return None
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = _AgentItem()
        return item

    def text_delta(self, item_id: str, delta: str) -> None:
        item = self._item(item_id)
        if item is not None:
            item.text.append(delta)

    def label(self, item_id: str, label: str) -> None:
        """Mark an item's line, e.g. "[filler]" for an acknowledgement asked during a tool wait."""
        item = self._item(item_id)
        if item is not None:
            item.label = label

    def text_done(self, item_id: str, text: str, *, has_audio: bool, now_ms: int) -> list[Line]:
        item = self._item(item_id)
        if item is None:
            return []
        item.final = text
        if not has_audio and item.first_ms is None:
            # A text-only answer: nothing to wait for.
            item.first_ms = item.last_ms = now_ms
            item.audio_done = item.played_out = True
        return self._ready(item_id)

    def frame(self, item_id: str | None, at_ms: int) -> list[Line]:
        """One tick: `item_id` is the item whose speech the caller hears now (or None)."""
        current = self._current
        if item_id == current:
            if item_id is not None:
                self._items[item_id].last_ms = at_ms + 20
            return []
        lines: list[Line] = []
        if current is not None:
            previous = self._items.get(current)
            if previous is not None and previous.audio_done:
                previous.played_out = True
                lines = self._ready(current)
        self._current = item_id
        if item_id is not None:
            item = self._item(item_id)
            if item is None:
                self._current = None
            else:
                if item.first_ms is None:
                    item.first_ms = at_ms
                item.last_ms = at_ms + 20
        return lines

    def audio_done(self, item_id: str, *, playing: bool) -> list[Line]:
        """The model sent all of this item's audio; it may still be playing."""
        item = self._item(item_id)
        if item is None:
            return []
        item.audio_done = True
        if not playing and item_id != self._current:
            item.played_out = True
        return self._ready(item_id)

    def cut(self, item_id: str, played_ms: int, received_ms: int, now_ms: int) -> list[Line]:
        """A barge-in stopped this item after `played_ms` of its `received_ms`."""
        item = self._item(item_id)
        if item is None:
            return []
        item.cut = played_ms / received_ms if received_ms > 0 else 0.0
        if item.first_ms is None:
            item.first_ms = now_ms
        item.last_ms = max(item.last_ms, now_ms) if item.first_ms is not None else now_ms
        if self._current == item_id:
            self._current = None
        return self._ready(item_id, force=True)

    def flush(self, now_ms: int) -> list[Line]:
        """The call ended: whatever is left, as far as it was heard."""
        lines: list[Line] = []
        for item_id in list(self._items):
            item = self._items[item_id]
            if item.first_ms is None:
                item.first_ms = item.last_ms = now_ms
            lines.extend(self._ready(item_id, force=True))
        return lines

    def _ready(self, item_id: str, *, force: bool = False) -> list[Line]:
        item = self._items.get(item_id)
        if item is None:
            return []
        text = item.final if item.final is not None else "".join(item.text)
        heard_all = item.played_out and item.cut is None
        if not force and not (heard_all and item.final is not None):
            return []
        del self._items[item_id]
        self._done[item_id] = None
        while len(self._done) > _MEMORY:
            self._done.popitem(last=False)
        truncated = item.cut is not None and item.cut < 1.0
        if item.cut is not None and item.cut <= 0.0:
            return []  # cut before the caller heard any of it
        if truncated:
            assert item.cut is not None
            text = cut_text(text, item.cut)
        if not text.strip():
            return []
        if item.label:
            text = f"{item.label} {text}"
        start = item.first_ms if item.first_ms is not None else item.last_ms
        return [Line("agent", text, start, max(start, item.last_ms), truncated)]


class CallerLines:
    """The caller's turns: times from the VAD, words from input transcription."""

    def __init__(self) -> None:
        self._turns: OrderedDict[str, list[int]] = OrderedDict()
        self._current: str | None = None
        self._started_ms: int | None = None

    def speech_started(self, item_id: str | None, at_ms: int) -> None:
        self._started_ms = at_ms
        if item_id is not None:
            self._turns[item_id] = [at_ms, at_ms]
            self._current = item_id

    def speech_stopped(self, item_id: str | None, at_ms: int) -> list[Line]:
        key = item_id or self._current
        start = self._started_ms if self._started_ms is not None else at_ms
        if key is not None:
            self._turns[key] = [self._turns.get(key, [start])[0], at_ms]
        self._started_ms = None
        return self._overdue(at_ms)

    def transcript(self, item_id: str | None, text: str, now_ms: int) -> list[Line]:
        times = self._turns.pop(item_id, None) if item_id is not None else None
        start, end = times if times is not None else (now_ms, now_ms)
        return [Line("caller", text, start, end)]

    def flush(self, now_ms: int) -> list[Line]:
        return self._overdue(now_ms, everything=True)

    def _overdue(self, now_ms: int, *, everything: bool = False) -> list[Line]:
        lines: list[Line] = []
        for item_id in list(self._turns):
            start, end = self._turns[item_id]
            if item_id == self._current and not everything and end == start:
                continue  # still speaking
            if everything or now_ms - end >= TRANSCRIPT_WAIT_MS:
                del self._turns[item_id]
                seconds = (end - start) / 1000
                lines.append(
                    Line("caller", f"[caller spoke {seconds:.1f} s; no transcript]", start, end)
                )
        return lines
