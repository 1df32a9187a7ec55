"""Digest authentication for the client side: answer a registrar's or proxy's challenge.

Why its own sans-I/O module: registrations and outbound INVITEs both meet 401/407
challenges, and the arithmetic (RFC 3261 §22, RFC 7616, RFC 8760 for SHA-256 in SIP)
is easy to get subtly wrong — quoting, `nc` counting, `-sess` variants, choosing among
several challenges. Keeping it pure makes it testable against the RFC's own vectors.

The password lives only inside `DigestCredentials` and is never part of a repr, an
error or the produced header (only the hash of it is).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = [
    "Challenge",
    "DigestClient",
    "DigestCredentials",
    "DigestError",
    "choose_challenge",
    "parse_auth_params",
    "parse_challenge",
]

#: Algorithms we can answer, most preferred first (RFC 8760 §2.4: SHA-256 over MD5).
_ALGORITHMS: dict[str, Callable[[bytes], str]] = {
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
    "SHA-256-SESS": lambda data: hashlib.sha256(data).hexdigest(),
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
    "MD5-SESS": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
}
_PREFERENCE = ("SHA-256", "SHA-256-SESS", "MD5", "MD5-SESS")

#: Bounds on what a peer may send us; a challenge is a few hundred bytes in practice.
_MAX_CHALLENGE_BYTES = 4096
_MAX_PARAMS = 32


class DigestError(ValueError):
    """A challenge we cannot parse or answer; the message names what was wrong."""


@dataclass(frozen=True)
class DigestCredentials:
    """Who we are to a registrar; `realm=None` answers any realm the peer names."""

    username: str
    password: str = field(repr=False)
    realm: str | None = None


@dataclass(frozen=True)
class Challenge:
    """One `Digest` challenge from a `WWW-Authenticate` or `Proxy-Authenticate` header."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    #: True for `Proxy-Authenticate` (a 407): the answer goes in `Proxy-Authorization`.
    proxy: bool = False

    @property
    def answer_header(self) -> str:
        return "Proxy-Authorization" if self.proxy else "Authorization"


def parse_challenge(value: str, *, proxy: bool = False) -> Challenge:
    """Parse one `Digest ...` header value; raises `DigestError` naming the problem."""
    if len(value) > _MAX_CHALLENGE_BYTES:
        raise DigestError("challenge longer than 4096 bytes")
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"scheme {scheme[:20]!r} is not Digest")
    params = parse_auth_params(rest)
    realm = params.get("realm")
    nonce = params.get("nonce")
    if realm is None:
        raise DigestError("challenge has no realm")
    if not nonce:
        raise DigestError("challenge has no nonce")
    algorithm = params.get("algorithm", "MD5").upper()
    qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
    return Challenge(
        realm=realm,
        nonce=nonce,
        algorithm=algorithm,
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
        proxy=proxy,
    )


def choose_challenge(values: Iterable[str], *, proxy: bool = False) -> Challenge:
    """The challenge to answer among several (RFC 8760: one per algorithm, best first).

    Unparseable or unsupported ones are skipped; if none is usable, the error says why
    the last one was refused.
    """
    usable: list[Challenge] = []
    last_error = DigestError("no Digest challenge")
    for value in values:
        try:
            challenge = parse_challenge(value, proxy=proxy)
        except DigestError as exc:
            last_error = exc
            continue
        if challenge.algorithm not in _ALGORITHMS:
            last_error = DigestError(f"algorithm {challenge.algorithm[:20]!r} is not supported")
            continue
        if challenge.qop and not {"auth", "auth-int"} & set(challenge.qop):
            last_error = DigestError("challenge offers no qop we support")
            continue
        usable.append(challenge)
    if not usable:
        raise last_error
    return min(usable, key=lambda c: _PREFERENCE.index(c.algorithm))


class DigestClient:
    """Answers challenges for one set of credentials, counting `nc` per nonce.

    Keep one per registration (or per outbound call): reusing a nonce with an
    incremented `nc` is what lets a registrar avoid a fresh challenge each refresh.
    """

    def __init__(
        self, credentials: DigestCredentials, *, cnonce: Callable[[], str] | None = None
    ) -> None:
        self._credentials = credentials
        self._cnonce = cnonce or (lambda: secrets.token_hex(8))
        self._challenge: Challenge | None = None
        self._nonce_count = 0

    @property
    def challenge(self) -> Challenge | None:
        return self._challenge

    def accept(self, challenge: Challenge) -> None:
        """Take a new challenge (from a 401/407); a new nonce restarts `nc` at 1."""
        if self._challenge is None or challenge.nonce != self._challenge.nonce:
            self._nonce_count = 0
        self._challenge = challenge

    def forget(self) -> None:
        self._challenge = None
        self._nonce_count = 0

    def authorization(self, method: str, uri: str, body: bytes = b"") -> tuple[str, str] | None:
        """The (header name, value) that answers the current challenge, or None if none."""
        challenge = self._challenge
        if challenge is None:
            return None
        creds = self._credentials
        if creds.realm is not None and creds.realm != challenge.realm:
            raise DigestError(
                f"registrar asks for realm {challenge.realm!r}, credentials are for {creds.realm!r}"
            )
        hash_ = _ALGORITHMS[challenge.algorithm]
        qop = _pick_qop(challenge.qop, body)
        cnonce = self._cnonce() if qop or challenge.algorithm.endswith("-SESS") else None
        ha1 = hash_(f"{creds.username}:{challenge.realm}:{creds.password}".encode())
        if challenge.algorithm.endswith("-SESS"):
            ha1 = hash_(f"{ha1}:{challenge.nonce}:{cnonce}".encode())
        a2 = f"{method}:{uri}"
        if qop == "auth-int":
            a2 = f"{a2}:{hash_(body)}"
        ha2 = hash_(a2.encode())
        fields = [
            f'username="{_quote(creds.username)}"',
            f'realm="{_quote(challenge.realm)}"',
            f'nonce="{_quote(challenge.nonce)}"',
            f'uri="{_quote(uri)}"',
        ]
        if qop:
            self._nonce_count += 1
            nc = f"{self._nonce_count:08x}"
            response = hash_(f"{ha1}:{challenge.nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())
            fields.append(f'response="{response}"')
            fields.append(f"algorithm={challenge.algorithm}")
            fields.append(f'cnonce="{cnonce}"')
            fields.append(f"qop={qop}")
            fields.append(f"nc={nc}")
        else:
            response = hash_(f"{ha1}:{challenge.nonce}:{ha2}".encode())
            fields.append(f'response="{response}"')
            fields.append(f"algorithm={challenge.algorithm}")
        if challenge.opaque is not None:
            fields.append(f'opaque="{_quote(challenge.opaque)}"')
        return challenge.answer_header, "Digest " + ", ".join(fields)


def _pick_qop(offered: tuple[str, ...], body: bytes) -> str | None:
    """`auth` when offered (it is what every registrar expects); `auth-int` only if alone."""
    if not offered:
        return None
    if "auth" in offered:
        return "auth"
    return "auth-int"


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def parse_auth_params(text: str) -> dict[str, str]:
    """`name=token` or `name="quoted, with \\" escapes"` pairs separated by commas."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise DigestError(f"parameter {text[i : i + 20]!r} has no value")
        name = text[i:eq].strip().lower()
        if not name or any(c in name for c in ' \t,"'):
            raise DigestError(f"bad parameter name {name[:20]!r}")
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            value, i = _read_quoted(text, i + 1)
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            value = text[i:end].strip()
            i = end
        params[name] = value
        if len(params) > _MAX_PARAMS:
            raise DigestError("too many challenge parameters")
    return params


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise DigestError("unterminated quoted value")
