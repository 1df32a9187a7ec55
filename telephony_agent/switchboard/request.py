"""What a front door asks of the switchboard, and what it may be told.

Why plain values: the SIP server and the HTTP app speak different protocols, but
the decision "may this call start, and which agent answers it" is the same for
both. A front door turns its signalling into a `CallRequest`; the switchboard
answers with an `Admission` (see `board.py`) or a `Refusal` that the front door
renders in its own protocol (486/503 for SIP, 503/404 for HTTP).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["CallKind", "CallRequest", "Refusal", "RefusalReason"]

#: The front door a call came through.
CallKind = Literal["sip", "webrtc", "whip"]
RefusalReason = Literal["over_capacity", "overloaded", "draining", "unknown_profile"]


@dataclass(frozen=True)
class CallRequest:
    """One call a front door wants to start.

    `caller` and `dialled` are the user parts the profiles match on (From and the
    Request-URI for SIP); `profile` names a profile explicitly (browser calls with
    `?profile=NAME`), which wins over number matching.
    """

    kind: CallKind
    #: The front door's own id: the SIP Call-ID or the browser call id.
    external_id: str
    caller: str = ""
    dialled: str = ""
    profile: str | None = None
    #: Where the signalling came from (host:port), for logs and records.
    remote: str = ""
    direction: Literal["inbound", "outbound"] = "inbound"
    #: Placeholder values for this call only (outbound calls' `variables`).
    variables: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Refusal:
    """Why a call may not start; `message` is safe to show the far end."""

    reason: RefusalReason
    message: str
