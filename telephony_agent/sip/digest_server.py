"""Digest authentication of requests we receive (devices registering calls to us).

Why stateless nonces: a challenge must cost the server nothing to issue, or a flood of
INVITEs becomes a flood of stored nonces. A nonce here is a timestamp signed with a
per-process secret; any nonce we issued can be checked (and found expired, answered
with `stale=true`) without remembering it. Unknown users are answered exactly like
wrong passwords — same challenge, same timing path — so extensions cannot be
enumerated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from telephony_agent.sip.digest import DigestError, parse_auth_params

__all__ = ["AuthResult", "DigestVerifier"]

_HASHES = {
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
}
_MAX_HEADER_BYTES = 4096


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    username: str | None = None
    #: The nonce was ours but too old: challenge again with `stale=true`, not a failure.
    stale: bool = False


class DigestVerifier:
    """Challenges and checks `Authorization` headers for one realm."""

    def __init__(
        self,
        realm: str,
        users: Mapping[str, str],
        *,
        nonce_ttl_s: float = 300.0,
        secret: bytes | None = None,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
    ) -> None:
        self.realm = realm
        self._users = dict(users)
        self._ttl = nonce_ttl_s
        self._algorithms = algorithms
        self._secret = secret or secrets.token_bytes(32)
        #: Stands in for an unknown user's password so both paths do the same work.
        self._decoy = secrets.token_hex(16)

    def challenges(self, now: float, *, stale: bool = False) -> list[str]:
        """`WWW-Authenticate` values in the configured order (RFC 8760: preferred first)."""
        nonce = self._nonce(now)
        suffix = ", stale=true" if stale else ""
        return [
            f'Digest realm="{self.realm}", nonce="{nonce}", qop="auth", algorithm={name}{suffix}'
            for name in self._algorithms
        ]

    def verify(self, method: str, authorization: str | None, now: float) -> AuthResult:
        if not authorization or len(authorization) > _MAX_HEADER_BYTES:
            return AuthResult(False)
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() != "digest":
            return AuthResult(False)
        try:
            params = parse_auth_params(rest)
        except DigestError:
            return AuthResult(False)
        username = params.get("username", "")
        algorithm = params.get("algorithm", "MD5").upper()
        hash_ = _HASHES.get(algorithm)
        nonce = params.get("nonce", "")
        uri = params.get("uri", "")
        response = params.get("response", "")
        if algorithm not in self._algorithms:
            hash_ = None
        if hash_ is None or params.get("realm") != self.realm or not uri or not username:
            return AuthResult(False)
        age = self._nonce_age(nonce, now)
        password = self._users.get(username, self._decoy)
        ha1 = hash_(f"{username}:{self.realm}:{password}".encode())
        ha2 = hash_(f"{method}:{uri}".encode())
        qop = params.get("qop")
        if qop == "auth":
            nc, cnonce = params.get("nc", ""), params.get("cnonce", "")
            expected = hash_(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode())
        elif qop is None:
            expected = hash_(f"{ha1}:{nonce}:{ha2}".encode())
        else:
            return AuthResult(False)
        matches = hmac.compare_digest(expected, response.lower())
        if not matches or username not in self._users or age is None:
            return AuthResult(False)
        if age > self._ttl:
            return AuthResult(False, username, stale=True)
        return AuthResult(True, username)

    def _nonce(self, now: float) -> str:
        stamp = struct.pack("!d", now)
        mac = hmac.new(self._secret, stamp, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(stamp + mac).decode("ascii").rstrip("=")

    def _nonce_age(self, nonce: str, now: float) -> float | None:
        """Seconds since we issued `nonce`, or None if it is not one of ours."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) != 24:
            return None
        stamp, mac = raw[:8], raw[8:]
        expected = hmac.new(self._secret, stamp, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(mac, expected):
            return None
        (issued,) = struct.unpack("!d", stamp)
        age = now - issued
        return age if age >= -5.0 else None
