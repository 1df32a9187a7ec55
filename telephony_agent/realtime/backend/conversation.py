"""The items of one connection's conversation, as far as the backend must remember them.

The backend keeps what strict validation needs (is this an assistant audio item, how
much of its audio was actually sent, which call ids exist) and the wire form of each
item for `conversation.item.retrieve`. Audio payloads are not kept, so memory per item
is small over long calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ItemRecord:
    id: str
    type: str
    """message | function_call | function_call_output"""
    role: str | None = None
    content_kind: str | None = None
    """GA content type of the first part: output_audio, output_text, input_audio, …"""
    rate: int = 24000
    sent_bytes: int = 0
    """Assistant audio bytes emitted for this item so far."""
    truncated_ms: int | None = None
    call_id: str | None = None
    wire: dict[str, Any] = field(default_factory=dict)
    sample_bytes: int = 2
    """2 for PCM16, 1 for G.711."""

    @property
    def sent_ms(self) -> float:
        return self.sent_bytes / (self.sample_bytes * self.rate / 1000)

    @property
    def audio_limit_ms(self) -> float:
        """How far a truncate may reach: the audio sent, or less once truncated."""
        if self.truncated_ms is not None:
            return min(self.sent_ms, self.truncated_ms)
        return self.sent_ms

    @property
    def is_assistant_audio(self) -> bool:
        return (
            self.type == "message"
            and self.role == "assistant"
            and (self.content_kind == "output_audio")
        )


class Conversation:
    def __init__(self) -> None:
        self._items: dict[str, ItemRecord] = {}
        self._call_names: dict[str, str | None] = {}
        """call_id → function name of every function call item seen (kept after a
        delete, like the call ids themselves: an output may still refer to it)."""

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def last_id(self) -> str | None:
        return next(reversed(self._items), None)

    def add(self, record: ItemRecord) -> str | None:
        """Append an item; returns the id of the item before it (`previous_item_id`)."""
        previous = self.last_id
        self._items[record.id] = record
        if record.type == "function_call" and record.call_id:
            name = record.wire.get("name")
            self._call_names[record.call_id] = name if isinstance(name, str) else None
        return previous

    def get(self, item_id: str) -> ItemRecord | None:
        return self._items.get(item_id)

    def delete(self, item_id: str) -> bool:
        return self._items.pop(item_id, None) is not None

    def has_call(self, call_id: str) -> bool:
        return call_id in self._call_names

    def call_name(self, call_id: str) -> str | None:
        """The function name of the call `call_id` answers (None if unknown)."""
        return self._call_names.get(call_id)
