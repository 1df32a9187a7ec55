"""TLS contexts for SIP over TLS (RFC 3261 §26.2, RFC 5630): ours as a server, ours as a client.

Why here: both directions need deliberate choices that are easy to get wrong. As a
server, trunks rarely present client certificates, so verifying them is off unless
asked. As a client (REGISTER, outbound INVITE to a `sips:` or `transport=tls` URI)
the registrar's certificate is always verified against the system's trust store or
a given CA file, with the host name checked. Files that cannot be read or do not
match fail with one line naming the setting, never with the key's contents.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from telephony_agent.errors import ConfigError

__all__ = ["client_context", "server_context"]

_MIN_VERSION = ssl.TLSVersion.TLSv1_2


def server_context(
    certificate: Path, key: Path, *, verify_client: bool = False, ca_file: Path | None = None
) -> ssl.SSLContext:
    """The context `serve` listens with; ConfigError names the unreadable file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MIN_VERSION
    for name, path in (("sip.tls_certificate", certificate), ("sip.tls_key", key)):
        if not path.is_file():
            raise ConfigError(f"{name} = '{path}': expected a readable PEM file (not found)")
    try:
        context.load_cert_chain(str(certificate), str(key))
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or "unreadable"
        raise ConfigError(
            f"sip.tls_certificate = '{certificate}', sip.tls_key = '{key}': expected a PEM "
            f"certificate chain and its private key ({reason})"
        ) from None
    if verify_client:
        context.verify_mode = ssl.CERT_REQUIRED
        _load_trust(context, ca_file, "sip.tls_ca_file")
    return context


def client_context(*, verify: bool = True, ca_file: Path | None = None) -> ssl.SSLContext:
    """The context for connections we open; verification is on unless turned off."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = _MIN_VERSION
    if verify:
        _load_trust(context, ca_file, "sip.tls_ca_file")
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _load_trust(context: ssl.SSLContext, ca_file: Path | None, key: str) -> None:
    if ca_file is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        return
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or "unreadable"
        raise ConfigError(f"{key} = '{ca_file}': expected PEM CA certificates ({reason})") from None
