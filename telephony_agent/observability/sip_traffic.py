"""SIP requests received and responses sent, by method and status code.

Why plain counters filled by the SIP front door: the request handler already sees every
request once (the transaction layer absorbed retransmissions) and every response we
send passes one method, so two dictionary increments there are all a message costs.
The metrics collector reads them when `/metrics` is scraped.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["SIP_METHODS", "SipTraffic"]

#: Methods counted under their own name; anything else is "other", so a peer sending
#: made-up methods cannot grow the metric without bound.
SIP_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "UPDATE",
        "INFO",
        "NOTIFY",
        "REFER",
        "PRACK",
        "SUBSCRIBE",
        "PUBLISH",
        "MESSAGE",
    }
)


def _method(name: str) -> str:
    return name if name in SIP_METHODS else "other"


class SipTraffic:
    """What the SIP front door received and answered since start."""

    __slots__ = ("requests", "responses")

    def __init__(self) -> None:
        #: Requests received, by method (retransmissions not included).
        self.requests: Counter[str] = Counter()
        #: Responses sent, by (request method, status code).
        self.responses: Counter[tuple[str, int]] = Counter()

    def request(self, method: str) -> None:
        self.requests[_method(method)] += 1

    def response(self, method: str, status: int) -> None:
        self.responses[(_method(method), status)] += 1
