"""`[[sip.users]]`: devices (desk phones, softphones) that authenticate their calls to us.

Why in the trunk package: like registrations, these are accounts with passwords kept
out of the file; unlike them, we are the side that challenges. The passwords are
read only when the server starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telephony_agent.agent.values import KeyChecker, did_you_mean, show
from telephony_agent.errors import ConfigError
from telephony_agent.trunk.passwords import PasswordSource, password_source

__all__ = ["DeviceUser", "parse_device_tables", "read_device_passwords"]

_KEYS = ("username", "password_env", "password_file")
_USER = re.compile(r"^[A-Za-z0-9_.!~*'()&=+$,;?/%-]{1,128}$")


@dataclass(frozen=True)
class DeviceUser:
    username: str
    password: PasswordSource


def parse_device_tables(raw: object, *, base_dir: Path, origin: str) -> tuple[DeviceUser, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{origin}: sip.users = {show(raw)}: expected [[sip.users]] tables")
    users: list[DeviceUser] = []
    seen: set[str] = set()
    for index, table in enumerate(raw):
        if not isinstance(table, Mapping):
            raise ConfigError(f"{origin}: sip.users[{index}] = {show(table)}: expected a table")
        users.append(_parse(table, index, base_dir, origin))
        if users[-1].username in seen:
            raise ConfigError(
                f"{origin}: sip.users[{index}].username = {users[-1].username!r}: "
                "expected a user name no other [[sip.users]] table uses"
            )
        seen.add(users[-1].username)
    return tuple(users)


def _parse(table: Mapping[str, Any], index: int, base_dir: Path, origin: str) -> DeviceUser:
    check = KeyChecker(f"{origin}: sip.users[{index}].")
    for key in table:
        if key not in _KEYS and key not in ("password", "secret"):
            raise ConfigError(
                f"{origin}: unknown key sip.users[{index}].{key}{did_you_mean(str(key), _KEYS)}"
            )
    username = check.text("username", table.get("username"))
    if not _USER.match(username):
        check.fail("username", username, "expected a SIP user name (no spaces, '@' or ':')")
    source = password_source(check, table, base_dir, f"sip.users[{username}]")
    return DeviceUser(username, source)


def read_device_passwords(
    users: tuple[DeviceUser, ...], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """username → password, read now; ConfigError names the first source that fails."""
    return {user.username: user.password.read(environ) for user in users}
