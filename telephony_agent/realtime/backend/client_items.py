"""Validation of client-made conversation items, and truncate, delete and retrieve.

Functions over the conversation: they return what to record (or the event to send) or
raise `Rejected` with the error the real service gives. Strictness is the point: a
client that passes here (above all the truncate checks) will not be surprised by a real
provider.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog
from numpy.typing import NDArray

from telephony_agent.realtime.backend import errors
from telephony_agent.realtime.backend.audio_format import InputDecoder, WireFormat
from telephony_agent.realtime.backend.conversation import Conversation, ItemRecord
from telephony_agent.realtime.backend.errors import Rejected
from telephony_agent.realtime.backend.stats import BackendStats, TruncateRecord

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ClientItem:
    record: ItemRecord
    audio: NDArray[np.int16] | None
    """Caller audio carried by a user message (an echo behaviour may answer it)."""


def decode_audio(data: object, fmt: WireFormat) -> NDArray[np.int16]:
    """Base64 audio of the session's input format → samples (a trailing odd byte of PCM16
    is the caller's problem to avoid)."""
    try:
        raw = base64.b64decode(str(data), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Rejected(errors.bad_base64()) from exc
    if not raw:
        raise Rejected(errors.empty_audio())
    return InputDecoder(fmt).decode(raw)


def append_bytes(message: dict[str, Any]) -> bytes:
    """The audio of an `input_audio_buffer.append`, or `Rejected` as the service words it."""
    audio = message.get("audio")
    if audio is None:
        raise Rejected(errors.missing("audio"))
    if not isinstance(audio, str):
        raise Rejected(errors.bad_type("audio", "a base64 string"))
    try:
        raw = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Rejected(errors.bad_base64()) from exc
    if not raw:
        raise Rejected(errors.empty_audio())
    return raw


def message_text(record: ItemRecord) -> str | None:
    """`role: text` of a message item with text parts (what a recap looks like)."""
    if record.type != "message":
        return None
    parts: list[Any] = record.wire.get("content") or []
    texts = [
        str(p["text"]) for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)
    ]
    return f"{record.role}: {' '.join(texts)}" if texts else None


def parse_item(
    item: Any,
    conversation: Conversation,
    new_id: Callable[[], str],
    input_format: WireFormat | None = None,
) -> ClientItem:
    """A `conversation.item.create` item: message, function_call or function_call_output.
    Audio content is read in `input_format` (the session's; PCM16 at 24 kHz if None)."""
    if not isinstance(item, dict):
        raise Rejected(errors.missing("item"))
    item_id = item.get("id")
    if item_id is not None and (not isinstance(item_id, str) or item_id in conversation):
        raise Rejected(errors.duplicate_item(str(item_id)))
    item_id = item_id or new_id()
    kind = item.get("type", "message")
    if kind == "function_call_output":
        return ClientItem(_function_output(item_id, item, conversation), None)
    if kind == "function_call":
        return ClientItem(_function_call(item_id, item), None)
    if kind == "message":
        return _message(item_id, item, input_format or WireFormat())
    raise Rejected(errors.item_not_supported(f"unsupported item type '{kind}'.", "item.type"))


def _function_output(item_id: str, item: dict[str, Any], conversation: Conversation) -> ItemRecord:
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str):
        raise Rejected(errors.missing("item.call_id"))
    if not isinstance(output, str):
        raise Rejected(errors.bad_type("item.output", "a string"))
    if not conversation.has_call(call_id):
        raise Rejected(errors.unknown_call_id(call_id))
    wire = {
        "id": item_id,
        "object": "realtime.item",
        "type": "function_call_output",
        "status": "completed",
        "call_id": call_id,
        "output": output,
    }
    return ItemRecord(item_id, "function_call_output", call_id=call_id, wire=wire)


def _function_call(item_id: str, item: dict[str, Any]) -> ItemRecord:
    """History replayed by a reconnecting client."""
    call_id, name = item.get("call_id"), item.get("name")
    if not isinstance(call_id, str):
        raise Rejected(errors.missing("item.call_id"))
    if not isinstance(name, str):
        raise Rejected(errors.missing("item.name"))
    arguments = item.get("arguments", "")
    wire = {
        "id": item_id,
        "object": "realtime.item",
        "type": "function_call",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
    }
    return ItemRecord(item_id, "function_call", call_id=call_id, wire=wire)


def _message(item_id: str, item: dict[str, Any], input_format: WireFormat) -> ClientItem:
    role = item.get("role")
    if role not in ("user", "system", "assistant"):
        raise Rejected(errors.item_not_supported(f"unsupported role '{role}'.", "item.role"))
    content = item.get("content")
    if not isinstance(content, list) or not content:
        raise Rejected(errors.missing("item.content"))
    # Assistant audio cannot be created by a client: only the model makes it.
    allowed = {"input_text", "text", "output_text"}
    if role == "user":
        allowed.add("input_audio")
    audio: list[NDArray[np.int16]] = []
    for i, part in enumerate(content):
        part_type = part.get("type") if isinstance(part, dict) else None
        if part_type not in allowed:
            raise Rejected(
                errors.item_not_supported(
                    f"content type '{part_type}' is not supported for role '{role}'.",
                    f"item.content[{i}].type",
                )
            )
        if part_type == "input_audio":
            audio.append(decode_audio(part.get("audio", ""), input_format))
    wire = {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": role,
        "content": content,
    }
    record = ItemRecord(item_id, "message", str(role), str(content[0].get("type")), wire=wire)
    return ClientItem(record, np.concatenate(audio) if audio else None)


def check_truncate(message: dict[str, Any], conversation: Conversation) -> tuple[ItemRecord, int]:
    """The item and `audio_end_ms` of a valid truncate, else `Rejected`.

    Only assistant audio that was actually sent can be truncated, and never past what
    was sent (or past an earlier truncation point).
    """
    item_id = message.get("item_id")
    if not isinstance(item_id, str):
        raise Rejected(errors.missing("item_id"))
    record = conversation.get(item_id)
    if record is None:
        raise Rejected(errors.truncate_unknown_item(item_id))
    if not record.is_assistant_audio or record.sent_bytes == 0:
        raise Rejected(errors.truncate_not_audio())
    content_index = message.get("content_index", 0)
    if content_index != 0:
        raise Rejected(errors.truncate_content_index(content_index))
    end = message.get("audio_end_ms")
    if end is None:
        raise Rejected(errors.missing("audio_end_ms"))
    if isinstance(end, bool) or not isinstance(end, int):
        raise Rejected(errors.bad_type("audio_end_ms", "an integer"))
    if end < 0:
        raise Rejected(errors.truncate_negative(end))
    limit = record.audio_limit_ms
    if end > limit:
        raise Rejected(errors.truncate_too_long(int(limit), end))
    return record, end


def trim_transcript(record: ItemRecord, fraction: float) -> None:
    """Truncation drops the transcript nobody heard (proportionally, here)."""
    for part in record.wire.get("content", []):
        text = part.get("transcript")
        if isinstance(text, str):
            part["transcript"] = text[: int(len(text) * min(1.0, fraction))]


def truncate_item(
    message: dict[str, Any], conversation: Conversation, stats: BackendStats
) -> dict[str, Any]:
    """Apply a valid `conversation.item.truncate`; returns the `truncated` event."""
    try:
        record, end = check_truncate(message, conversation)
    except Rejected:
        stats.rejected_truncates += 1
        log.warning("truncate_rejected", item_id=message.get("item_id"))
        raise
    sent_ms = record.sent_ms
    record.truncated_ms = end
    trim_transcript(record, end / sent_ms if sent_ms else 0.0)
    stats.truncates_accepted += 1
    stats.truncations.append(TruncateRecord(record.id, end, sent_ms))
    return {
        "type": "conversation.item.truncated",
        "item_id": record.id,
        "content_index": 0,
        "audio_end_ms": end,
    }


def delete_item(
    message: dict[str, Any], conversation: Conversation, stats: BackendStats
) -> dict[str, Any]:
    """Apply a `conversation.item.delete`; returns the `deleted` event."""
    item_id = message.get("item_id")
    if not isinstance(item_id, str):
        raise Rejected(errors.missing("item_id"))
    if not conversation.delete(item_id):
        raise Rejected(errors.delete_unknown_item(item_id))
    stats.items_deleted += 1
    return {"type": "conversation.item.deleted", "item_id": item_id}


def retrieve_item(message: dict[str, Any], conversation: Conversation) -> dict[str, Any]:
    item_id = message.get("item_id")
    record = conversation.get(item_id) if isinstance(item_id, str) else None
    if record is None:
        raise Rejected(errors.retrieve_unknown_item(item_id))
    return {"type": "conversation.item.retrieved", "item": record.wire}
