"""HTTP-side settings resolved at start: the signalling bearer token, ICE servers, TLS.

Why at start: a token or TURN credential that is configured but missing must stop
`serve` before anything listens, with one line naming the key, rather than leave
signalling open or fail every browser call later.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path

from telephony_agent.config import Settings
from telephony_agent.errors import ConfigError
from telephony_agent.logs import register_secret
from telephony_agent.media.webrtc import IceServer

__all__ = ["ice_servers_from_settings", "resolve_http_token", "tls_context_from_settings"]


def resolve_http_token(settings: Settings, environ: Mapping[str, str] | None = None) -> str | None:
    """The bearer token signalling requires, or None when none is configured.

    ``http.token_env`` (a variable name) wins over ``http.token_file``. A token that is
    configured but missing or empty is an error, not "no token": starting open when the
    operator asked for protection would be the worst failure. The value is registered
    with the log redactor so it can never be printed.
    """
    env = os.environ if environ is None else environ
    http = settings.http
    if http.token_env:
        value = env.get(http.token_env, "").strip()
        if not value:
            raise ConfigError(
                f"http.token_env = {http.token_env!r}: that environment variable is not set "
                "or empty (it must hold the bearer token)"
            )
    elif http.token_file:
        try:
            value = Path(http.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(
                f"http.token_file = {http.token_file!r}: cannot read it ({why})"
            ) from None
        if not value:
            raise ConfigError(f"http.token_file = {http.token_file!r}: the file is empty")
    else:
        return None
    register_secret(value)
    return value


def ice_servers_from_settings(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> tuple[IceServer, ...]:
    """STUN and TURN servers for the leg from ``[webrtc]``; the TURN credential from env.

    STUN URLs need no credential and form one server; TURN URLs share the configured
    username and credential. A TURN URL without both is refused at startup, because
    aiortc would otherwise fail on every call instead.
    """
    env = os.environ if environ is None else environ
    webrtc = settings.webrtc
    urls = [part.strip() for part in webrtc.ice_servers.split(",") if part.strip()]
    stun = tuple(u for u in urls if u.lower().startswith(("stun:", "stuns:")))
    turn = tuple(u for u in urls if u.lower().startswith(("turn:", "turns:")))
    unknown = [u for u in urls if u not in stun and u not in turn]
    if unknown:
        raise ConfigError(
            f"webrtc.ice_servers = {webrtc.ice_servers!r}: {unknown[0]!r} is not a "
            "stun:, stuns:, turn: or turns: URL"
        )
    servers: list[IceServer] = []
    if stun:
        servers.append(IceServer(urls=stun))
    if turn:
        credential_env = webrtc.turn_credential_env
        credential = env.get(credential_env, "").strip() if credential_env else ""
        if not webrtc.turn_username or not credential:
            raise ConfigError(
                "webrtc.ice_servers lists a TURN server: set webrtc.turn_username and "
                "webrtc.turn_credential_env (an environment variable holding the credential)"
            )
        register_secret(credential)
        servers.append(IceServer(urls=turn, username=webrtc.turn_username, credential=credential))
    return tuple(servers)


def tls_context_from_settings(settings: Settings) -> ssl.SSLContext | None:
    """The server TLS context for `[http] tls_certificate`/`tls_key`, or None (plain HTTP).

    Loaded at start so a certificate that cannot be read stops `serve` with one line
    naming it, instead of every browser failing its handshake later.
    """
    http = settings.http
    if http.tls_certificate is None or http.tls_key is None:
        return None
    files = (("http.tls_certificate", http.tls_certificate), ("http.tls_key", http.tls_key))
    for key, path in files:
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise ConfigError(
                f"{key} = {path!r}: cannot read it ({exc.strerror or exc}); expected a PEM file"
            ) from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        # Never OpenSSL's terminal prompt: an encrypted key fails here, in one line.
        context.load_cert_chain(http.tls_certificate, http.tls_key, password=_no_password)
    except (ssl.SSLError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise ConfigError(
            f"http.tls_certificate = {http.tls_certificate!r}: not a usable certificate and "
            f"key ({reason}); expected a PEM certificate chain and its private key"
        ) from None
    return context


def _no_password() -> bytes:
    return b""
