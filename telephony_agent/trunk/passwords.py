"""Passwords named in settings by where they live (`password_env` / `password_file`).

Why shared: registrations and device users both take a password that must never sit
in the settings file, both check the pair the same way at load time, and both read
it only when the server starts, failing with one line that names the source.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telephony_agent.agent.values import KeyChecker
from telephony_agent.errors import ConfigError

__all__ = ["PasswordSource", "password_source"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class PasswordSource:
    """Where one password is read from; `where` names its table in errors."""

    where: str
    env: str | None = None
    file: Path | None = None

    def read(self, environ: Mapping[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        if self.env is not None:
            value = env.get(self.env, "")
            if not value:
                raise ConfigError(
                    f"{self.where}.password_env = {self.env!r}: the variable is not set or empty"
                )
            return value
        assert self.file is not None
        try:
            value = self.file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ConfigError(
                f"{self.where}.password_file = '{self.file}': cannot read it ({reason})"
            ) from None
        if not value:
            raise ConfigError(f"{self.where}.password_file = '{self.file}': the file is empty")
        return value


def password_source(
    check: KeyChecker, table: Mapping[str, Any], base_dir: Path, where: str
) -> PasswordSource:
    """Exactly one of `password_env` and `password_file`; a `password` key is refused."""
    for key in ("password", "secret"):
        if key in table:
            check.fail(
                key, "***", "passwords never go in the file: use password_env or password_file"
            )
    has_env = "password_env" in table
    has_file = "password_file" in table
    if has_env == has_file:
        check.fail(
            "password_env",
            table.get("password_env"),
            "expected exactly one of password_env (a variable name) or password_file",
        )
    if has_env:
        name = check.text("password_env", table["password_env"])
        if not _ENV_NAME.match(name):
            check.fail("password_env", name, "expected an environment variable name")
        return PasswordSource(where, env=name)
    path = Path(check.text("password_file", table["password_file"]))
    return PasswordSource(where, file=path if path.is_absolute() else base_dir / path)
