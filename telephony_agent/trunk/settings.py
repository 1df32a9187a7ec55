"""`[[registrations]]` tables: which registrars to register with, and as whom.

Why its own parser: a registration is a list entry whose values refer to each other
(the domain defaults to the registrar's host, the auth name to the user name) and to
secrets that must never sit in the file (`password_env` / `password_file`). Every
error names the registration, so an operator with several trunks finds the bad line.
The password itself is read only when the server starts (`read_password`), so
`config check` works on a machine without it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telephony_agent.agent.values import KeyChecker, did_you_mean, show
from telephony_agent.errors import ConfigError
from telephony_agent.sip.message import SipParseError, SipUri
from telephony_agent.trunk.passwords import PasswordSource, password_source

__all__ = ["RegistrationSettings", "parse_registration_tables", "read_password"]

_KEYS = (
    "name",
    "registrar",
    "username",
    "auth_username",
    "password_env",
    "password_file",
    "realm",
    "domain",
    "expires",
    "outbound_proxy",
    "transport",
    "profile",
    "contact_user",
    "keepalive_s",
    "retry_min_s",
    "retry_max_s",
    "register",
)
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_USER = re.compile(r"^[A-Za-z0-9_.!~*'()&=+$,;?/%-]{1,128}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TRANSPORTS = ("udp", "tcp", "tls")


@dataclass(frozen=True)
class RegistrationSettings:
    """One `[[registrations]]` table, validated; no secret inside."""

    name: str
    registrar: str
    username: str
    auth_username: str
    domain: str
    password: PasswordSource | None = None
    realm: str | None = None
    expires: int = 300
    outbound_proxy: str | None = None
    transport: str = "udp"
    profile: str | None = None
    contact_user: str = ""
    keepalive_s: float = 25.0
    retry_min_s: float = 10.0
    retry_max_s: float = 600.0
    #: False: an account for outbound calls only (trunks that authenticate INVITEs
    #: without a registration); nothing is sent until a call is placed.
    register: bool = True

    @property
    def aor(self) -> str:
        return f"sip:{self.username}@{self.domain}"


def parse_registration_tables(
    raw: object, *, base_dir: Path, origin: str, known_profiles: Collection[str]
) -> tuple[RegistrationSettings, ...]:
    """Validate the `registrations` array of a settings file; ConfigError on the first fault."""
    if not isinstance(raw, list):
        raise ConfigError(
            f"{origin}: registrations = {show(raw)}: expected a list of [[registrations]] tables"
        )
    result: list[RegistrationSettings] = []
    seen_names: set[str] = set()
    seen_users: dict[str, str] = {}
    for index, table in enumerate(raw):
        if not isinstance(table, Mapping):
            raise ConfigError(f"{origin}: registrations[{index}] = {show(table)}: expected a table")
        entry = _parse_table(
            table, index=index, base_dir=base_dir, origin=origin, known_profiles=known_profiles
        )
        check = KeyChecker(f"{origin}: registrations[{entry.name}].")
        if entry.name in seen_names:
            check.fail("name", entry.name, "expected a unique name")
        seen_names.add(entry.name)
        other = seen_users.get(entry.contact_user)
        if other is not None:
            check.fail(
                "contact_user",
                entry.contact_user,
                f"expected a contact user no other registration uses ({other!r} does); "
                "calls are routed to a registration by it",
            )
        seen_users[entry.contact_user] = entry.name
        result.append(entry)
    return tuple(result)


def _parse_table(
    table: Mapping[str, Any],
    *,
    index: int,
    base_dir: Path,
    origin: str,
    known_profiles: Collection[str],
) -> RegistrationSettings:
    name_value = table.get("name", f"registration-{index + 1}")
    if not isinstance(name_value, str) or not _NAME.match(name_value):
        raise ConfigError(
            f"{origin}: registrations[{index}].name = {show(name_value)}: expected 1-64 "
            "letters, digits, '.', '_' or '-'"
        )
    check = KeyChecker(f"{origin}: registrations[{name_value}].")
    for key in table:
        if key not in _KEYS and key not in ("password", "secret"):
            raise ConfigError(
                f"{origin}: unknown key registrations[{name_value}].{key}"
                f"{did_you_mean(str(key), _KEYS)}"
            )
    registrar = _sip_uri(check, "registrar", table.get("registrar"))
    username = _user(check, "username", table.get("username"))
    auth_username = username
    if "auth_username" in table:
        auth_username = check.text("auth_username", table["auth_username"])
    domain = SipUri.parse(registrar).host
    if "domain" in table:
        domain = _host(check, "domain", table["domain"])
    password = password_source(check, table, base_dir, f"registrations[{name_value}]")
    transport = _transport(check, table.get("transport"), registrar)
    profile = None
    if "profile" in table:
        profile = check.text("profile", table["profile"])
        if profile not in known_profiles:
            check.fail(
                "profile",
                profile,
                f"expected the name of a [[profiles]] table{did_you_mean(profile, known_profiles)}",
            )
    contact_user = username
    if "contact_user" in table:
        contact_user = _user(check, "contact_user", table["contact_user"])
    retry_min = check.number("retry_min_s", table.get("retry_min_s", 10.0), 1.0, 3600.0)
    retry_max = check.number("retry_max_s", table.get("retry_max_s", 600.0), 1.0, 86400.0)
    if retry_max < retry_min:
        check.fail("retry_max_s", retry_max, f"expected at least retry_min_s ({retry_min:g})")
    return RegistrationSettings(
        name=name_value,
        registrar=registrar,
        username=username,
        auth_username=auth_username,
        domain=domain,
        password=password,
        realm=check.text("realm", table["realm"]) if "realm" in table else None,
        expires=check.integer("expires", table.get("expires", 300), 60, 86400),
        outbound_proxy=(
            _sip_uri(check, "outbound_proxy", table["outbound_proxy"])
            if "outbound_proxy" in table
            else None
        ),
        transport=transport,
        profile=profile,
        contact_user=contact_user,
        keepalive_s=check.number("keepalive_s", table.get("keepalive_s", 25.0), 0.0, 3600.0),
        retry_min_s=retry_min,
        retry_max_s=retry_max,
        register=check.flag("register", table.get("register", True)),
    )


def read_password(entry: RegistrationSettings, environ: Mapping[str, str] | None = None) -> str:
    """The registration's password from its variable or file; ConfigError names the source."""
    assert entry.password is not None
    return entry.password.read(environ)


def _sip_uri(check: KeyChecker, key: str, value: object) -> str:
    text = check.text(key, value)
    try:
        uri = SipUri.parse(text.strip())
    except (SipParseError, ValueError):
        check.fail(key, value, "expected a SIP URI, e.g. sip:sip.example.net")
    if uri.scheme.lower() != "sip":
        check.fail(key, value, "expected a sip: URI (sips: comes with TLS support)")
    return text.strip()


def _user(check: KeyChecker, key: str, value: object) -> str:
    text = check.text(key, value)
    if not _USER.match(text):
        check.fail(key, value, "expected a SIP user name (no spaces, '@' or ':')")
    return text


def _host(check: KeyChecker, key: str, value: object) -> str:
    text = check.text(key, value).strip()
    if any(c in text for c in ' @;<>"') or len(text) > 253:
        check.fail(key, value, "expected a domain name or address")
    return text


def _transport(check: KeyChecker, value: object, registrar: str) -> str:
    if value is None:
        param = SipUri.parse(registrar).params.get("transport")
        value = (param or "udp").lower()
    text = check.text("transport", value).lower()
    if text not in TRANSPORTS:
        check.fail("transport", value, f"expected one of {', '.join(TRANSPORTS)}")
    return text
