"""Names read off a SIP request: who called, what they dialled, which dialog tag.

Why apart from the server: profiles are matched on these strings, so the one rule for
turning a header into a number (telephone-subscriber parameters dropped, escapes
decoded) lives in one small place that tests can reach without a running server.
"""

from __future__ import annotations

from urllib.parse import unquote

from telephony_agent.sip.message import NameAddr, SipRequest, SipUri

__all__ = ["dialled_number", "header_tag", "plain_user", "user_part"]


def user_part(value: str | None) -> str:
    """The user part of a From/To header's URI ("" when there is none or it is bad)."""
    if not value:
        return ""
    try:
        return plain_user(SipUri.parse(NameAddr.parse(value).uri).user or "")
    except ValueError:
        return ""


def dialled_number(request: SipRequest) -> str:
    """The number a caller dialled: the Request-URI's user part, else the To header's."""
    try:
        user = SipUri.parse(request.uri).user
    except ValueError:
        user = None
    return plain_user(user) if user else user_part(request.headers.get("To"))


def plain_user(user: str) -> str:
    """A user part as profiles match it: telephone-subscriber parameters (";npdi",
    ";rn=...") dropped, escaped characters (%2B for "+") as what they stand for."""
    return unquote(user.split(";", 1)[0])


def header_tag(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return NameAddr.parse(value).tag
    except ValueError:
        return None
