"""A refusal of an HTTP request, shared by the HTTP app and the browser-call front door.

Why its own module: `browser_calls.py` decides refusals (capacity, bad offers, an
unreachable model) and `http_app.py` renders them (JSON or plain text for WHIP);
neither should import the other for one exception class.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["HttpRejection"]


class HttpRejection(Exception):
    """A request refused with a 4xx/5xx: status, a log reason, and the client's message."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = dict(headers or {})
