"""Number normalisation shared by profile loading and call routing.

Why only visual separators: people write numbers the way they read them,
"+7 (495) 123-45-67", while a SIP gateway sends "+74951234567" in the Request-URI.
Removing spaces, dashes, dots and parentheses makes those equal without guessing at
anything that changes meaning: a leading "+", a trunk prefix such as "8" or "0", or
letters in a named entry like "booking" are kept exactly as written.
"""

from __future__ import annotations

_SEPARATORS = str.maketrans("", "", " \t-.()")


def normalise_number(number: str) -> str:
    """`number` without visual separators (spaces, tabs, dashes, dots, parentheses)."""
    return number.translate(_SEPARATORS)
