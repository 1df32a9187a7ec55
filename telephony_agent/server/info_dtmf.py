"""DTMF sent as SIP INFO (application/dtmf-relay or application/dtmf), read from the body.

Why its own module: the body is text from the network that no parser checked, so it
is read without int() on arbitrary digits and without trusting its length; this is
all there is to it, and it needs nothing of the call that receives it.
"""

from __future__ import annotations

from telephony_agent.sip.message import is_digits

__all__ = ["INFO_DTMF_TYPES", "parse_info_dtmf"]

#: Content types of INFO requests that carry a key press.
INFO_DTMF_TYPES = ("application/dtmf-relay", "application/dtmf")


def parse_info_dtmf(body: bytes) -> tuple[str | None, int]:
    """The digit (None if there is none) and its duration in ms, from an INFO body:
    ``Signal=5`` / ``Duration=160`` lines (dtmf-relay) or the bare digit (dtmf)."""
    digit: str | None = None
    duration = 100
    for line in body.decode("utf-8", "replace").splitlines():
        name, _, value = line.partition("=")
        name = name.strip().lower()
        value = value.strip()
        if name == "signal" and value:
            candidate = value[0].upper()
            if candidate in "0123456789*#ABCD":
                digit = candidate
        elif name == "duration" and is_digits(value) and len(value) <= 6:
            duration = min(int(value), 10_000)
    if digit is None:
        text = body.decode("utf-8", "replace").strip()
        if len(text) == 1 and text.upper() in "0123456789*#ABCD":
            digit = text.upper()
    return digit, duration
