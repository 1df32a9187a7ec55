"""Which `error` events end a session, and why: credentials, protocol shape, a missing model.

Why a module of its own: the rules are lists of codes and message shapes gathered from
each provider (protocol notes §6 and §8), they change when a provider changes its
wording, and they are tested on their own. The protocol only asks "what kind of error
is this" and acts on the answer.

Yandex reports gRPC-style statuses inside the message of a `server_error` with no code
(`Runtime error: NOT_FOUND: Instance with model gpt://…/… not found`), so messages are
matched as well as codes.
"""

from __future__ import annotations

import re
from typing import Literal

from telephony_agent.realtime.events import ServerError

#: Error codes/types that mean "your credentials are not accepted": fatal, never retried.
AUTH_ERROR_CODES = frozenset(
    {
        "invalid_api_key",
        "invalid_authentication",
        "authentication_failed",
        "unauthorized",
        "unauthenticated",
        "forbidden",
        "permission_denied",
        "access_denied",
    }
)
AUTH_ERROR_TYPES = frozenset({"authentication_error", "permission_error", "unauthorized"})
#: The server refuses the request shape itself (OpenAI after the beta was retired).
PROTOCOL_ERROR_CODES = frozenset({"beta_api_shape_disabled"})
#: The model named in the URL does not exist (or is not enabled for this account).
MODEL_ERROR_CODES = frozenset({"model_not_found", "not_found"})
SESSION_EXPIRED_CODE = "session_expired"

_GRPC_AUTH = re.compile(r"\b(UNAUTHENTICATED|PERMISSION_DENIED)\b")
_MODEL_MISSING = re.compile(
    r"\bNOT_FOUND\b.*\bmodel\b|\bmodel\b.*\bnot found\b|\binvalid model uri\b",
    re.IGNORECASE,
)

ErrorKind = Literal["auth", "protocol", "model", "expired", "other"]


def error_kind(error: ServerError) -> ErrorKind:
    """What an `error` event means for the session (see the module docstring)."""
    code = (error.code or "").lower()
    if code in AUTH_ERROR_CODES or error.type in AUTH_ERROR_TYPES:
        return "auth"
    if _GRPC_AUTH.search(error.message):
        return "auth"
    if code in PROTOCOL_ERROR_CODES:
        return "protocol"
    if code in MODEL_ERROR_CODES or _MODEL_MISSING.search(error.message):
        return "model"
    if code == SESSION_EXPIRED_CODE:
        return "expired"
    return "other"
