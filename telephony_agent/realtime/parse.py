"""Server JSON frames → typed events, for all three dialects. Pure functions, no state.

Why lenient: providers add fields, omit optional ones and mix beta and GA names. A
known event with a missing id still becomes its typed event (with an empty id), extra
fields are ignored, unknown types become `Unknown`. Only frames that cannot be read
at all (not JSON, not an object, no type, undecodable audio) are rejected, and the
caller counts and skips them.
"""

from __future__ import annotations

import binascii
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from telephony_agent.realtime.dialect import normalize_event_type
from telephony_agent.realtime.events import (
    AssistantTranscriptDelta,
    AssistantTranscriptDone,
    AudioDelta,
    AudioDone,
    FunctionCall,
    InputCommitted,
    InputTranscript,
    ItemAdded,
    ItemTruncated,
    ResponseCreated,
    ResponseDone,
    ServerError,
    ServerEvent,
    SessionCreated,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TimeoutTriggered,
    Unknown,
)

#: Sample rates implied by format names that carry none.
_FORMAT_RATES: Mapping[str, int] = {
    "pcm16": 24000,
    "audio/pcm": 24000,
    "g711_ulaw": 8000,
    "g711_alaw": 8000,
    "audio/pcmu": 8000,
    "audio/pcma": 8000,
}

#: Format names of every dialect → our names (`session_config.AudioFormat`).
_FORMAT_NAMES: Mapping[str, str] = {
    "pcm16": "pcm",
    "audio/pcm": "pcm",
    "g711_ulaw": "pcmu",
    "audio/pcmu": "pcmu",
    "g711_alaw": "pcma",
    "audio/pcma": "pcma",
}


class MalformedEvent(ValueError):
    """A frame that is JSON but cannot be turned into an event; counted and skipped."""


def decode_frame(text: str | bytes) -> dict[str, Any] | None:
    """The JSON object of a text frame, or None if it is not a JSON object with a type."""
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting raises the last
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        return None
    return obj


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _s(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        # json.loads reads NaN, Infinity and 1e999, which int() refuses.
        return int(value) if math.isfinite(value) else None
    return None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _format_rate(fmt: Any) -> int | None:
    """Rate of a GA format object (`{type, rate}`) or a beta format name (`pcm16`)."""
    if isinstance(fmt, str):
        return _FORMAT_RATES.get(fmt)
    if isinstance(fmt, dict):
        rate = _int(fmt.get("rate"))
        if rate:
            return rate
        kind = fmt.get("type")
        return _FORMAT_RATES.get(kind) if isinstance(kind, str) else None
    return None


def session_rates(session: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(output_rate, input_rate) stated by a session object: GA, beta or Yandex mixed.

    GA `audio.{output,input}.format` wins; beta `output_audio_format`/`input_audio_format`
    (strings or objects) are the fallback, which also covers Yandex's mixed echo.
    """
    audio = _obj(session.get("audio"))
    out_rate = _format_rate(_obj(audio.get("output")).get("format"))
    in_rate = _format_rate(_obj(audio.get("input")).get("format"))
    if out_rate is None:
        out_rate = _format_rate(session.get("output_audio_format"))
    if in_rate is None:
        in_rate = _format_rate(session.get("input_audio_format"))
    return out_rate, in_rate


def _format_name(fmt: Any) -> str | None:
    """`pcm`, `pcmu` or `pcma` for a GA format object or a beta format name; the raw
    type for a format we do not know, None when absent."""
    kind = fmt.get("type") if isinstance(fmt, dict) else fmt
    if not isinstance(kind, str):
        return None
    return _FORMAT_NAMES.get(kind, kind)


def session_formats(session: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(output_format, input_format) stated by a session object, as `session_rates`."""
    audio = _obj(session.get("audio"))
    out_format = _format_name(_obj(audio.get("output")).get("format"))
    in_format = _format_name(_obj(audio.get("input")).get("format"))
    if out_format is None:
        out_format = _format_name(session.get("output_audio_format"))
    if in_format is None:
        in_format = _format_name(session.get("input_audio_format"))
    return out_format, in_format


def _session_created(obj: dict[str, Any]) -> ServerEvent:
    session = _obj(obj.get("session"))
    return SessionCreated(session_id=_str(session.get("id")), raw=session)


def _session_updated(obj: dict[str, Any]) -> ServerEvent:
    session = _obj(obj.get("session"))
    out_rate, in_rate = session_rates(session)
    out_format, in_format = session_formats(session)
    return SessionUpdated(
        output_rate=out_rate,
        input_rate=in_rate,
        raw=session,
        output_format=out_format,
        input_format=in_format,
    )


def _speech_started(obj: dict[str, Any]) -> ServerEvent:
    return SpeechStarted(_int(obj.get("audio_start_ms")) or 0, _str(obj.get("item_id")))


def _speech_stopped(obj: dict[str, Any]) -> ServerEvent:
    return SpeechStopped(_int(obj.get("audio_end_ms")) or 0, _str(obj.get("item_id")))


def _committed(obj: dict[str, Any]) -> ServerEvent:
    return InputCommitted(_str(obj.get("item_id")))


def _transcript_completed(obj: dict[str, Any]) -> ServerEvent:
    return InputTranscript(_str(obj.get("item_id")), _s(obj, "transcript"), final=True)


def _transcript_delta(obj: dict[str, Any]) -> ServerEvent:
    return InputTranscript(_str(obj.get("item_id")), _s(obj, "delta"), final=False)


def _item_added(obj: dict[str, Any]) -> ServerEvent:
    item = _obj(obj.get("item"))
    return ItemAdded(
        item_id=_str(item.get("id")),
        role=_str(item.get("role")),
        item_type=_s(item, "type"),
        previous_item_id=_str(obj.get("previous_item_id")),
    )


def _item_truncated(obj: dict[str, Any]) -> ServerEvent:
    return ItemTruncated(_str(obj.get("item_id")), _int(obj.get("audio_end_ms")) or 0)


def _response_created(obj: dict[str, Any]) -> ServerEvent:
    return ResponseCreated(_s(_obj(obj.get("response")), "id"))


def _audio_delta(obj: dict[str, Any]) -> ServerEvent:
    delta = obj.get("delta")
    if delta is None or delta == "":
        audio = b""
    elif isinstance(delta, str):
        try:
            audio = binascii.a2b_base64(delta)
        except (binascii.Error, ValueError) as exc:
            raise MalformedEvent(f"audio delta is not base64: {exc}") from None
    else:
        raise MalformedEvent("audio delta is not a string")
    return AudioDelta(_s(obj, "response_id"), _s(obj, "item_id"), audio)


def _audio_done(obj: dict[str, Any]) -> ServerEvent:
    return AudioDone(_s(obj, "response_id"), _s(obj, "item_id"))


def _text_delta(obj: dict[str, Any]) -> ServerEvent:
    return AssistantTranscriptDelta(_s(obj, "response_id"), _s(obj, "item_id"), _s(obj, "delta"))


def _text_done(obj: dict[str, Any]) -> ServerEvent:
    # output_audio_transcript.done carries `transcript`, output_text.done carries `text`.
    text = obj.get("transcript")
    if not isinstance(text, str):
        text = _s(obj, "text")
    return AssistantTranscriptDone(_s(obj, "response_id"), _s(obj, "item_id"), text)


def _arguments_done(obj: dict[str, Any]) -> ServerEvent:
    # `name` is absent in older GA builds; the protocol fills it from output_item.added.
    return FunctionCall(
        response_id=_s(obj, "response_id"),
        item_id=_s(obj, "item_id"),
        call_id=_s(obj, "call_id"),
        name=_s(obj, "name"),
        arguments=_s(obj, "arguments"),
    )


def _output_item_done(obj: dict[str, Any]) -> ServerEvent:
    item = _obj(obj.get("item"))
    if item.get("type") != "function_call":
        return Unknown("response.output_item.done")
    return FunctionCall(
        response_id=_s(obj, "response_id"),
        item_id=_s(item, "id"),
        call_id=_s(item, "call_id"),
        name=_s(item, "name"),
        arguments=_s(item, "arguments"),
    )


def _response_done(obj: dict[str, Any]) -> ServerEvent:
    response = _obj(obj.get("response"))
    details = _obj(response.get("status_details"))
    reason = _str(details.get("reason"))
    error = details.get("error")
    usage = response.get("usage")
    return ResponseDone(
        response_id=_s(response, "id"),
        status=_s(response, "status") or "completed",
        reason=reason,
        error=error if isinstance(error, dict) else None,
        usage=usage if isinstance(usage, dict) else None,
    )


def _error(obj: dict[str, Any]) -> ServerEvent:
    raw = obj.get("error")
    error = raw if isinstance(raw, dict) else {"message": raw if isinstance(raw, str) else ""}
    return ServerError(
        type=_s(error, "type") or "error",
        code=_str(error.get("code")),
        message=_s(error, "message"),
        param=_str(error.get("param")),
        event_id=_str(error.get("event_id")),
    )


def _timeout_triggered(obj: dict[str, Any]) -> ServerEvent:
    return TimeoutTriggered(
        _int(obj.get("audio_start_ms")), _int(obj.get("audio_end_ms")), _str(obj.get("item_id"))
    )


_PARSERS: Mapping[str, Callable[[dict[str, Any]], ServerEvent]] = {
    "session.created": _session_created,
    "session.updated": _session_updated,
    "input_audio_buffer.speech_started": _speech_started,
    "input_audio_buffer.speech_stopped": _speech_stopped,
    "input_audio_buffer.committed": _committed,
    "input_audio_buffer.timeout_triggered": _timeout_triggered,
    "conversation.item.input_audio_transcription.completed": _transcript_completed,
    "conversation.item.input_audio_transcription.delta": _transcript_delta,
    "conversation.item.added": _item_added,
    "conversation.item.truncated": _item_truncated,
    "response.created": _response_created,
    "response.output_audio.delta": _audio_delta,
    "response.output_audio.done": _audio_done,
    "response.output_audio_transcript.delta": _text_delta,
    "response.output_audio_transcript.done": _text_done,
    "response.output_text.delta": _text_delta,
    "response.output_text.done": _text_done,
    "response.function_call_arguments.done": _arguments_done,
    "response.output_item.done": _output_item_done,
    "response.done": _response_done,
    "error": _error,
}


def parse_event(obj: dict[str, Any]) -> ServerEvent:
    """The typed event of a decoded frame; raises `MalformedEvent` only for bad audio."""
    kind = normalize_event_type(str(obj.get("type")))
    parser = _PARSERS.get(kind)
    return parser(obj) if parser is not None else Unknown(kind)
