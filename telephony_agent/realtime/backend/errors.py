"""The backend's error events, with the codes and wording the real services use.

Clients match on `error.code` (and sometimes on the message), so the texts follow what
OpenAI sends as closely as public records allow. Every builder returns a `ClientFault`;
the session turns it into the wire shape and adds the offending client `event_id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CLIENT_EVENT_TYPES = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.truncate",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "response.create",
    "response.cancel",
)


@dataclass(frozen=True)
class ClientFault:
    code: str | None
    message: str
    param: str | None = None
    type: str = "invalid_request_error"

    def event(self, client_event_id: str | None) -> dict[str, Any]:
        """The `error` server event (its own `event_id` is added when it is sent)."""
        return {
            "type": "error",
            "error": {
                "type": self.type,
                "code": self.code,
                "message": self.message,
                "param": self.param,
                "event_id": client_event_id,
            },
        }


def invalid_json() -> ClientFault:
    return ClientFault(
        "invalid_json",
        "We could not parse the JSON body of your request. Please send valid JSON text frames.",
    )


def binary_frame() -> ClientFault:
    return ClientFault(
        "invalid_json", "Binary frames are not supported; send JSON events as text frames."
    )


def unknown_event(kind: object) -> ClientFault:
    supported = ", ".join(f"'{t}'" for t in CLIENT_EVENT_TYPES)
    return ClientFault(
        "invalid_value", f"Invalid value: '{kind}'. Supported values are: {supported}.", "type"
    )


def missing(param: str) -> ClientFault:
    return ClientFault(
        "missing_required_parameter", f"Missing required parameter: '{param}'.", param
    )


def bad_type(param: str, expected: str) -> ClientFault:
    return ClientFault("invalid_type", f"Invalid type for '{param}': expected {expected}.", param)


def empty_audio() -> ClientFault:
    return ClientFault(
        "invalid_value",
        "Invalid 'audio'. Expected base64-encoded audio bytes, but got empty bytes.",
        "audio",
    )


def bad_base64() -> ClientFault:
    return ClientFault(
        "invalid_value",
        "Invalid 'audio'. Expected base64-encoded audio bytes, but got an invalid value.",
        "audio",
    )


def commit_empty(buffered_ms: float) -> ClientFault:
    return ClientFault(
        "input_audio_buffer_commit_empty",
        "Error committing input audio buffer: buffer too small. Expected at least 100ms of "
        f"audio, but buffer only has {buffered_ms:.2f}ms of audio.",
    )


def active_response(response_id: str) -> ClientFault:
    return ClientFault(
        "conversation_already_has_active_response",
        f"Conversation already has an active response in progress: {response_id}. Wait until "
        "the response is finished before creating a new one.",
    )


def cancel_not_active() -> ClientFault:
    return ClientFault(
        "response_cancel_not_active", "Cancellation failed: no active response found"
    )


def truncate_unknown_item(item_id: object) -> ClientFault:
    return ClientFault(
        "item_truncate_invalid_item_id",
        f"Error truncating item: the item with id '{item_id}' does not exist.",
        "item_id",
    )


def truncate_not_audio() -> ClientFault:
    return ClientFault(
        "unsupported_content_type", "Only model output audio messages can be truncated", "item_id"
    )


def truncate_content_index(index: object) -> ClientFault:
    return ClientFault(
        "invalid_value",
        f"Invalid 'content_index': {index}. The item has a single content part at index 0.",
        "content_index",
    )


def truncate_negative(value: int) -> ClientFault:
    return ClientFault(
        "integer_below_min_value",
        "Invalid 'audio_end_ms': integer below minimum value. Expected a value >= 0, but got "
        f"{value} instead.",
        "audio_end_ms",
    )


def truncate_too_long(audio_ms: int, requested_ms: int) -> ClientFault:
    return ClientFault(
        "invalid_value",
        f"Audio content of {audio_ms}ms is already shorter than {requested_ms}ms",
        "audio_end_ms",
    )


def delete_unknown_item(item_id: object) -> ClientFault:
    return ClientFault(
        "item_delete_invalid_item_id",
        f"Error deleting item: the item with id '{item_id}' does not exist.",
        "item_id",
    )


def retrieve_unknown_item(item_id: object) -> ClientFault:
    return ClientFault(
        "item_retrieve_invalid_item_id",
        f"Error retrieving item: the item with id '{item_id}' does not exist.",
        "item_id",
    )


def duplicate_item(item_id: str) -> ClientFault:
    return ClientFault(
        "item_create_invalid_item_id",
        f"Error adding item: the item with id '{item_id}' already exists.",
        "item.id",
    )


def unknown_call_id(call_id: object) -> ClientFault:
    return ClientFault(
        "invalid_value",
        f"Error adding item: no function call with call_id '{call_id}' exists in the conversation.",
        "item.call_id",
    )


def item_not_supported(detail: str, param: str) -> ClientFault:
    return ClientFault("invalid_value", f"Error adding item: {detail}", param)


def session_expired(after_s: float) -> ClientFault:
    minutes = after_s / 60
    text = f"{minutes:g}" if minutes >= 1 else f"{minutes:.2g}"
    return ClientFault(
        "session_expired", f"Your session hit the maximum duration of {text} minutes."
    )


def beta_shape_disabled() -> ClientFault:
    return ClientFault(
        "beta_api_shape_disabled",
        "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API.",
    )


def model_not_found(model: str, yandex: bool) -> ClientFault:
    """The model in the URL does not exist: Yandex says it as a gRPC status inside a
    `server_error` with no code; OpenAI as `model_not_found`."""
    if yandex:
        return ClientFault(
            None,
            f"Runtime error: NOT_FOUND: Instance with model {model} not found",
            type="server_error",
        )
    return ClientFault(
        "model_not_found",
        f"The model '{model}' does not exist or you do not have access to it.",
        "model",
    )


def not_supported(kind: str) -> ClientFault:
    """A client event the dialect's provider marks as not supported."""
    return ClientFault("invalid_value", f"'{kind}' is currently not supported.", "type")


def server_error() -> ClientFault:
    return ClientFault(
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
        type="server_error",
    )


class Rejected(Exception):
    """Raised by validation to answer the client event with `fault` (non-fatal)."""

    def __init__(self, fault: ClientFault) -> None:
        super().__init__(fault.message)
        self.fault = fault
