"""The exact cut of a barge-in: which items to truncate where, and which audio is stale.

Why apart from the bridge: the protocol notes' barge-in rule (§3) is bookkeeping, not
I/O. What the caller is hearing, what is still arriving, which responses and items
are stale, and where each item was already truncated decide a cut that must be right
in every path: truncate at what was played, never past what was received, skip at
0, never twice, never an item that was heard to its end, and drop every later delta
of an interrupted response. Keeping that state here makes the rule testable without a
socket, and leaves the bridge to send what `cut` returns.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from telephony_agent.call.playback import AnyPlayback, Interruption
from telephony_agent.call.profile import GREETING_AUDIO_ITEM

__all__ = ["Cut", "CutTracker"]

#: How many recent response/item ids are remembered as stale (bounded memory).
_STALE_MEMORY = 64


@dataclass(frozen=True)
class Cut:
    """What one barge-in does; the bridge sends the cancel and the truncates."""

    #: The item the caller was hearing (or about to hear), if any.
    heard: str | None
    interruption: Interruption
    #: Send `response.cancel` for the active response.
    cancel: bool
    #: `conversation.item.truncate` to send: (item id, audio_end_ms).
    truncates: tuple[tuple[str, int], ...]
    #: Every item the cut stopped (for the transcript lines), in order.
    items: tuple[str, ...]


class CutTracker:
    """Per-response and per-item state of the agent's speech, as far as a cut needs it."""

    def __init__(self) -> None:
        self._heard_item: str | None = None
        self._receiving_item: str | None = None
        self._item_response: dict[str, str] = {}
        self._done_responses: deque[str] = deque(maxlen=_STALE_MEMORY)
        self._stale_responses: deque[str] = deque(maxlen=_STALE_MEMORY)
        self._stale_items: deque[str] = deque(maxlen=_STALE_MEMORY)
        self._truncated: deque[str] = deque(maxlen=_STALE_MEMORY)

    def is_stale(self, response_id: str | None, item_id: str | None) -> bool:
        """An event of a response or item that a barge-in cut off."""
        return (response_id is not None and response_id in self._stale_responses) or (
            item_id is not None and item_id in self._stale_items
        )

    def is_response_stale(self, response_id: str) -> bool:
        return response_id in self._stale_responses

    def knows_item(self, item_id: str) -> bool:
        return item_id in self._item_response

    def accept_delta(self, response_id: str, item_id: str, has_audio: bool) -> bool:
        """Whether an audio delta may be played; False for a cut response or item, and
        for a delta after its `response.done` (it cannot be placed in the conversation).
        An accepted delta with audio makes its item the one arriving."""
        if self.is_stale(response_id, item_id) or response_id in self._done_responses:
            return False
        if has_audio:
            self._item_response[item_id] = response_id
            self._receiving_item = item_id
        return True

    def frame_heard(self, item_id: str) -> None:
        """A frame of `item_id` went to the leg (once per tick: one assignment)."""
        self._heard_item = item_id

    def response_done(self, response_id: str) -> None:
        self._done_responses.append(response_id)
        receiving = self._receiving_item
        if receiving is not None and self._item_response.get(receiving) == response_id:
            self._receiving_item = None

    def discard_response(self, response_id: str) -> None:
        """A response we cancel before any of it may be heard: drop all its audio."""
        self._stale_responses.append(response_id)

    def lose_response(self, response_id: str) -> list[str]:
        """A response cut by a lost connection: it and its items are stale from now on;
        returns its items (the ones whose audio must stop)."""
        items = [item for item, rid in self._item_response.items() if rid == response_id]
        self._stale_responses.append(response_id)
        self._stale_items.extend(items)
        self._heard_item = None
        self._receiving_item = None
        return items

    def cut(self, playback: AnyPlayback, *, response_id: str | None, response_active: bool) -> Cut:
        """Stop the agent now: flush playout, and say what to cancel and truncate.

        What the caller is hearing now, and what is still arriving; an item that
        finished playing before this turn is history and must not be touched.
        """
        playing = playback.buffer.is_playing
        heard_now = self._heard_item if playing else None
        arriving = self._receiving_item if response_active else None
        candidates = [i for i in (heard_now, arriving) if i is not None]
        heard = candidates[0] if candidates else None
        interruption = playback.interrupt(heard)
        cancel = response_active and response_id is not None
        if cancel and response_id is not None:
            self._stale_responses.append(response_id)
        items = tuple(dict.fromkeys(candidates))
        truncates: list[tuple[str, int]] = []
        for item_id in items:
            self._stale_items.append(item_id)
            at = self._truncate_at(item_id, playback)
            if at is not None:
                truncates.append((item_id, at))
                self._truncated.append(item_id)
        self._heard_item = None
        self._receiving_item = None
        return Cut(heard, interruption, cancel, tuple(truncates), items)

    def _truncate_at(self, item_id: str, playback: AnyPlayback) -> int | None:
        """Truncate at what was heard; never past what was received; skip when nothing was."""
        if item_id in self._truncated or item_id == GREETING_AUDIO_ITEM:
            return None
        received = playback.received_ms(item_id)
        played = max(0, min(playback.played_ms(item_id), received))
        if played <= 0:
            return None
        response_done = self._item_response.get(item_id) in self._done_responses
        if response_done and played >= received:
            return None  # it was heard to the end: nothing to correct
        return played
