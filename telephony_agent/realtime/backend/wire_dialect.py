"""How the backend renames its (GA-named) server events for the beta and Yandex dialects.

The session logic only ever speaks OpenAI GA names; this table is applied as each event
leaves, so the three dialects differ in exactly one place. The backend keeps its own
small table instead of sharing the client's: the server decides what to *send*, the
client how to *parse*, and a shared table would let one bug hide in both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from telephony_agent.realtime.backend.ids import IdSource
from telephony_agent.realtime.backend.options import DialectName

DROP = ""
"""Mapped name meaning: this dialect never sends the event."""

_BETA_NAMES: Mapping[str, str] = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
    "conversation.item.done": DROP,
}

# Yandex: GA audio names, assistant text as output_text.* even in audio mode,
# beta-style conversation.item.created, and no rate_limits.updated.
_YANDEX_NAMES: Mapping[str, str] = {
    "response.output_audio_transcript.delta": "response.output_text.delta",
    "response.output_audio_transcript.done": "response.output_text.done",
    "conversation.item.added": "conversation.item.created",
    "conversation.item.done": DROP,
    "rate_limits.updated": DROP,
}

# Event payload fields renamed together with the event (transcript.done carries
# `transcript`, text.done carries `text`).
_YANDEX_FIELDS: Mapping[str, Mapping[str, str]] = {
    "response.output_audio_transcript.done": {"transcript": "text"},
}

_BETA_CONTENT: Mapping[str, str] = {"output_audio": "audio", "output_text": "text"}


@dataclass(frozen=True)
class WireDialect:
    """Renaming rules of one dialect; `GA` is the identity."""

    name: DialectName
    names: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    content_types: Mapping[str, str] = field(default_factory=dict)

    def event_name(self, ga_name: str) -> str:
        """The wire name of a GA event, or `DROP` when this dialect does not send it."""
        return self.names.get(ga_name, ga_name)

    def rename(self, event: dict[str, Any], keep_dropped: bool = False) -> dict[str, Any] | None:
        """Return the event as this dialect sends it, or None if it is not sent at all.

        `keep_dropped` keeps events the dialect normally omits (under their GA name),
        which is how the "unknown events" fault feeds a client events it does not expect.
        """
        ga_name = str(event["type"])
        wire = self.event_name(ga_name)
        if wire == DROP:
            return event if keep_dropped else None
        event["type"] = wire
        for old, new in self.fields.get(ga_name, {}).items():
            if old in event:
                event[new] = event.pop(old)
        return event

    def serialise(
        self, event: dict[str, Any], ids: IdSource, *, unknown_events: bool
    ) -> str | None:
        """The JSON frame of a GA event in this dialect with a fresh `event_id`, or None
        if the dialect does not send it. `unknown_events` (a fault) keeps dropped events
        and adds a field no client knows to every event."""
        renamed = self.rename(event, keep_dropped=unknown_events)
        if renamed is None:
            return None
        out = {"type": renamed.pop("type"), "event_id": ids.new("event"), **renamed}
        if unknown_events:
            out["x_unannounced"] = {"note": "a field no client knows", "values": [1, 2]}
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False)

    def content_type(self, ga_type: str) -> str:
        """Content part type inside items (`output_audio` is `audio` in beta)."""
        return self.content_types.get(ga_type, ga_type)

    @property
    def mixed_session_echo(self) -> bool:
        """Yandex echoes GA `audio{}` plus legacy top-level fields in session events."""
        return self.name == "yandex"

    @property
    def beta_session_shape(self) -> bool:
        return self.name == "beta"

    # What the Yandex dialect does differently, beyond names (protocol notes §8): it takes
    # PCM only, never fires an idle timeout, refuses buffer clears, and answers one
    # session.update with two session.updated.

    @property
    def accepts_g711(self) -> bool:
        return self.name != "yandex"

    @property
    def idle_timeout(self) -> bool:
        """Whether `idle_timeout_ms` is honoured (Yandex marks it unsupported)."""
        return self.name != "yandex"

    @property
    def unsupported_client_events(self) -> frozenset[str]:
        if self.name == "yandex":
            return frozenset({"input_audio_buffer.clear", "output_audio_buffer.clear"})
        return frozenset()

    @property
    def session_updated_per_update(self) -> int:
        return 2 if self.name == "yandex" else 1


def wire_dialect(name: DialectName) -> WireDialect:
    if name == "beta":
        return WireDialect(name, _BETA_NAMES, {}, _BETA_CONTENT)
    if name == "yandex":
        return WireDialect(name, _YANDEX_NAMES, _YANDEX_FIELDS, {})
    return WireDialect(name)
