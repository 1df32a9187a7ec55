"""Following a blind transfer (RFC 3515): what the NOTIFYs about a REFER say.

Why sans-I/O: the REFER's own 202 only means "I will try"; the outcome arrives later
as NOTIFYs whose `message/sipfrag` bodies carry the status line of the transferee's
INVITE to the target (100 → 180 → 200, or 486, 603, 404, a timeout). Turning those
into one verdict — still trying, succeeded, or failed with a reason a model can
repeat to the caller — is pure logic and belongs apart from sockets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "REFUSED_STATUSES",
    "TransferOutcome",
    "TransferProgress",
    "parse_sipfrag",
    "reason_for_status",
]

#: Final answers to a REFER that mean "not here, not this way" rather than "the target
#: could not be reached": the caller's side will not transfer at all, so a fallback of
#: our own (a bridge, a message) may apply.
REFUSED_STATUSES = frozenset({403, 405, 420, 488, 501})

_STATUS_LINE = re.compile(r"^SIP/2\.0\s+(\d{3})(?:\s+(.*))?$")


def parse_sipfrag(body: bytes) -> int | None:
    """The status code of a `message/sipfrag` body's first line, or None if unreadable."""
    first = body[:200].decode("utf-8", "replace").lstrip().split("\n", 1)[0].strip()
    match = _STATUS_LINE.match(first)
    if match is None:
        return None
    return int(match.group(1))


def reason_for_status(status: int) -> str:
    """A short end reason for a failed attempt to reach someone (also used by outbound calls)."""
    if status in (486, 600):
        return "busy"
    if status in (603, 403):
        return "declined"
    if status in (404, 604, 410, 484):
        return "not_found"
    if status in (408, 487):
        return "no_answer"
    if status in (480, 503, 502, 504, 500):
        return "unavailable"
    return f"failed_{status}"


@dataclass(frozen=True)
class TransferOutcome:
    """Where a transfer stands: `done` once it succeeded or failed for good; `refused`
    when the REFER itself was turned down or never answered (nothing was tried)."""

    done: bool
    succeeded: bool = False
    status: int | None = None
    reason: str = ""
    refused: bool = False


class TransferProgress:
    """Feed it the REFER's final response and each NOTIFY; read `outcome`."""

    def __init__(self) -> None:
        self.outcome = TransferOutcome(done=False)
        self.last_status: int | None = None

    def refer_answered(self, status: int) -> TransferOutcome:
        """The REFER itself: 2xx means it is being tried; anything else is a refusal."""
        if 200 <= status < 300:
            return self.outcome
        refused = status in REFUSED_STATUSES
        if status in (405, 501, 420):
            self.outcome = TransferOutcome(True, False, status, "refer_not_supported", refused)
        else:
            self.outcome = TransferOutcome(True, False, status, reason_for_status(status), refused)
        return self.outcome

    def refer_unanswered(self) -> TransferOutcome:
        """The REFER got no final answer at all: a peer that drops what it does not know."""
        if not self.outcome.done:
            self.outcome = TransferOutcome(True, False, None, "refer_unanswered", refused=True)
        return self.outcome

    def notify(self, body: bytes, subscription_state: str | None) -> TransferOutcome:
        """One NOTIFY; a terminated subscription without a final status is a failure."""
        if self.outcome.done:
            return self.outcome
        status = parse_sipfrag(body)
        if status is not None:
            self.last_status = status
            if 200 <= status < 300:
                self.outcome = TransferOutcome(True, True, status, "transferred")
                return self.outcome
            if status >= 300:
                self.outcome = TransferOutcome(True, False, status, reason_for_status(status))
                return self.outcome
        state = (subscription_state or "").split(";")[0].strip().lower()
        if state == "terminated":
            self.outcome = TransferOutcome(True, False, self.last_status, "no_outcome")
        return self.outcome

    def timed_out(self) -> TransferOutcome:
        if not self.outcome.done:
            self.outcome = TransferOutcome(True, False, self.last_status, "no_answer")
        return self.outcome
