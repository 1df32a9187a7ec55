"""The three dialects of the Realtime protocol: event names, and which session builder.

Why one entry point: dialects differ in a few event names and in the session object
they accept, and nowhere else. The event-name table lives here and each dialect's
session object has one builder of its own (`session_ga`, `session_yandex`,
`session_beta`), so adding a provider never adds a code path to the client.

* GA: OpenAI's current protocol (`type:"realtime"`, nested `audio.{input,output}`).
* BETA: OpenAI's retired shape (`modalities`, `pcm16`, top-level `turn_detection`).
  Its event names are parsed for every dialect, because servers mix them.
* YANDEX: the GA shape without `type:"realtime"`, text and audio out, explicit rates;
  Yandex still sends `conversation.item.created` and the assistant text as
  `response.output_text.*`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from telephony_agent.realtime.session_beta import beta_session
from telephony_agent.realtime.session_config import SessionConfig
from telephony_agent.realtime.session_ga import ga_session
from telephony_agent.realtime.session_yandex import yandex_session


class Dialect(StrEnum):
    GA = "ga"
    BETA = "beta"
    YANDEX = "yandex"


#: Beta (and Yandex legacy) server event names → GA names.
BETA_TO_GA: Mapping[str, str] = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "conversation.item.created": "conversation.item.added",
}


def normalize_event_type(name: str) -> str:
    """The GA name of a server event type (identity for GA names and unknown types)."""
    return BETA_TO_GA.get(name, name)


def assistant_text_type(dialect: Dialect) -> str:
    """Content part type of assistant text inside a message item."""
    return "text" if dialect is Dialect.BETA else "output_text"


def session_payload(config: SessionConfig, dialect: Dialect) -> dict[str, Any]:
    """The `session` object of our `session.update`: the dialect's own builder, then
    `config.extra` merged in last (provider options this project does not model)."""
    if dialect is Dialect.BETA:
        session = beta_session(config)
    elif dialect is Dialect.YANDEX:
        session = yandex_session(config)
    else:
        session = ga_session(config)
    if config.extra:
        deep_merge(session, config.extra)
    return session


def deep_merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Merge `extra` into `target` in place: nested objects merge, anything else replaces."""
    for key, value in extra.items():
        current = target.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            deep_merge(current, value)
        else:
            target[key] = copy.deepcopy(value)
