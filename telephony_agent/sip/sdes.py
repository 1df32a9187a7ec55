"""SDES keying for SRTP (RFC 4568): the `a=crypto` lines of an SDP offer or answer.

Why separate from the SDP parser: the crypto attribute has its own grammar (suite,
`inline:` key with optional lifetime and MKI) and its own negotiation rule (the
answer picks one of the offered tags and brings its own key). Keeping it apart lets
the SDP module stay about media lines, and the keys never reach a log: `CryptoLine`
hides its key in repr.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "SUITES",
    "CryptoLine",
    "SdesError",
    "answer_crypto",
    "new_crypto",
    "parse_crypto",
]

#: Suites we offer and accept, preferred first (RFC 4568 §6.2).
SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
#: 16-byte master key + 14-byte master salt, base64 without padding issues: 40 chars.
_KEY_SALT_BYTES = 30
_TAG = re.compile(r"^\d{1,9}$")


class SdesError(ValueError):
    """An `a=crypto` line we cannot use; the message says why (never the key)."""


@dataclass(frozen=True)
class CryptoLine:
    """One `a=crypto:` attribute: tag, suite and the 30-byte master key and salt."""

    tag: int
    suite: str
    key_salt: bytes = field(repr=False)

    def to_attribute(self) -> str:
        """The attribute value after `a=`."""
        key = base64.b64encode(self.key_salt).decode("ascii")
        return f"crypto:{self.tag} {self.suite} inline:{key}"


def new_crypto(tag: int = 1, suite: str = SUITES[0]) -> CryptoLine:
    """A fresh line with a random master key and salt (from the OS's CSPRNG)."""
    return CryptoLine(tag, suite, os.urandom(_KEY_SALT_BYTES))


def parse_crypto(value: str) -> CryptoLine:
    """Parse the value of one `a=crypto:` attribute (with or without the `crypto:` name).

    Unknown suites, session parameters we do not support (any but none), and MKIs raise
    `SdesError`; the caller skips such a line and looks at the next one.
    """
    text = value.strip()
    if text.startswith("crypto:"):
        text = text[len("crypto:") :]
    parts = text.split()
    if len(parts) < 3:
        raise SdesError("crypto line needs a tag, a suite and key parameters")
    tag_text, suite, key_params = parts[0], parts[1], parts[2]
    if not _TAG.match(tag_text):
        raise SdesError(f"crypto tag {tag_text[:12]!r} is not a number")
    if suite not in SUITES:
        raise SdesError(f"crypto suite {suite[:40]!r} is not supported")
    if len(parts) > 3:
        raise SdesError("crypto session parameters are not supported")
    if ";" in key_params:
        raise SdesError("more than one master key is not supported")
    if not key_params.startswith("inline:"):
        raise SdesError("crypto key method must be inline")
    key_text, _, rest = key_params[len("inline:") :].partition("|")
    if rest:
        # lifetime and/or MKI: a lifetime is fine (we rekey never), an MKI is not.
        fields = rest.split("|")
        if any(":" in f for f in fields):
            raise SdesError("crypto MKI is not supported")
    try:
        key_salt = base64.b64decode(key_text, validate=True)
    except (binascii.Error, ValueError):
        raise SdesError("crypto key is not valid base64") from None
    if len(key_salt) != _KEY_SALT_BYTES:
        raise SdesError(f"crypto key is {len(key_salt)} bytes, expected {_KEY_SALT_BYTES}")
    return CryptoLine(int(tag_text), suite, key_salt)


def answer_crypto(offered: Iterable[str]) -> tuple[CryptoLine, CryptoLine]:
    """(their line, our line): the first usable offered suite, answered with our own key.

    Raises `SdesError` naming the last problem when no offered line is usable.
    """
    problem = "no crypto line offered"
    usable: list[CryptoLine] = []
    for value in offered:
        try:
            usable.append(parse_crypto(value))
        except SdesError as exc:
            problem = str(exc)
    if not usable:
        raise SdesError(problem)
    theirs = min(usable, key=lambda line: SUITES.index(line.suite))
    return theirs, new_crypto(theirs.tag, theirs.suite)
