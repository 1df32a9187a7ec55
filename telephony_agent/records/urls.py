"""The `records.database` URL: which database it names, and how to show it safely.

Why redaction lives here: the URL is the one place the database password travels, and
every error about the database wants to say which database it means. Every message in
this package shows the URL through `redact_url`, so the password cannot leak through a
message someone adds later without thinking about it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from telephony_agent.records.errors import RecordsError

MASK = "***"
SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")
EXPECTED = (
    "expected sqlite:///relative/path.db, sqlite:////absolute/path.db"
    " or postgresql://user:password@host:port/dbname"
)
_QUERY_PASSWORD = re.compile(r"(?i)(password\s*=\s*)[^&\s]*")
_REASON_LIMIT = 200


@dataclass(frozen=True)
class SqliteTarget:
    """A SQLite file; `path` is absolute (a relative URL is resolved at parse time)."""

    path: Path
    shown: str


@dataclass(frozen=True)
class PostgresTarget:
    """A PostgreSQL database; `conninfo` is the URL psycopg connects with."""

    conninfo: str
    shown: str
    password: str | None


DatabaseTarget = SqliteTarget | PostgresTarget


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***` (`postgresql://user:***@host/db`).

    It never raises and errs on the side of masking: everything between the scheme and
    the last `@` after the user name counts as the password.
    """
    text = url
    scheme, sep, rest = text.partition("://")
    if sep:
        at = rest.rfind("@")
        if at >= 0:
            user, colon, _password = rest[:at].partition(":")
            if colon:
                rest = f"{user}:{MASK}@{rest[at + 1 :]}"
        text = f"{scheme}{sep}{rest}"
    return _QUERY_PASSWORD.sub(lambda m: m.group(1) + MASK, text)


def url_password(url: str) -> str | None:
    """The password in a PostgreSQL URL (to register with the log redactor), or None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.password:
        return unquote(parts.password)
    for key, value in parse_qsl(parts.query):
        if key.lower() == "password" and value:
            return value
    return None


def short_reason(exc: BaseException, secrets: tuple[str | None, ...] = ()) -> str:
    """`ErrorClass: first line of the message`, secrets masked, cut to a log-friendly size."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    text = redact_url(text)
    if len(text) > _REASON_LIMIT:
        text = text[: _REASON_LIMIT - 1] + "…"
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def parse_database_url(url: str, *, base_dir: Path | None = None) -> DatabaseTarget:
    """Resolve `records.database`; anything we cannot use is a one-line RecordsError."""
    shown = redact_url(url)
    if url.startswith(SQLITE_PREFIX):
        rest = url[len(SQLITE_PREFIX) :]
        if rest.strip("/") == "":
            raise _bad_url(shown)
        path = Path(rest)
        if not path.is_absolute():
            path = (base_dir if base_dir is not None else Path.cwd()) / path
        return SqliteTarget(path=path.absolute(), shown=shown)
    parts = _split(url, shown)
    if parts.scheme.lower() in POSTGRES_SCHEMES and not parts.fragment:
        try:
            _ = parts.port
        except ValueError:
            raise _bad_url(shown) from None
        return PostgresTarget(conninfo=url, shown=shown, password=url_password(url))
    raise _bad_url(shown)


def _split(url: str, shown: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError:
        raise _bad_url(shown) from None


def _bad_url(shown: str) -> RecordsError:
    return RecordsError(f"records.database = {shown!r}: {EXPECTED}")
