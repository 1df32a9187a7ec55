"""`records.database` URLs: the forms we accept, and that a password never shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from telephony_agent.records import RecordsError, open_store, redact_url, url_password
from telephony_agent.records.urls import (
    PostgresTarget,
    SqliteTarget,
    parse_database_url,
    short_reason,
)

EXPECTED = (
    "expected sqlite:///relative/path.db, sqlite:////absolute/path.db"
    " or postgresql://user:password@host:port/dbname"
)


def test_a_relative_sqlite_path_is_relative_to_the_base_dir(tmp_path: Path) -> None:
    target = parse_database_url("sqlite:///data/calls.db", base_dir=tmp_path)
    assert target == SqliteTarget(
        path=tmp_path / "data" / "calls.db", shown="sqlite:///data/calls.db"
    )


def test_a_relative_sqlite_path_without_base_dir_is_relative_to_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    target = parse_database_url("sqlite:///calls.db")
    assert isinstance(target, SqliteTarget)
    assert target.path == tmp_path / "calls.db"


def test_an_absolute_sqlite_path_ignores_the_base_dir(tmp_path: Path) -> None:
    target = parse_database_url("sqlite:////var/lib/agent/calls.db", base_dir=tmp_path)
    assert isinstance(target, SqliteTarget)
    assert target.path == Path("/var/lib/agent/calls.db")


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgresql_urls_keep_the_url_and_hide_the_password(scheme: str) -> None:
    url = f"{scheme}://agent:hunter2-secret@db.internal:5433/calls"
    target = parse_database_url(url)
    assert target == PostgresTarget(
        conninfo=url,
        shown=f"{scheme}://agent:***@db.internal:5433/calls",
        password="hunter2-secret",
    )


@pytest.mark.parametrize(
    "url",
    [
        "mysql://agent:hunter2-secret@db/calls",
        "sqlite://relative.db",
        "sqlite:///",
        "calls.db",
        "",
        "postgresql://agent:hunter2-secret@db:notaport/calls",
    ],
)
def test_anything_else_names_the_key_the_value_and_the_forms(url: str) -> None:
    with pytest.raises(RecordsError) as caught:
        open_store(url)
    message = str(caught.value)
    assert message == f"records.database = {redact_url(url)!r}: {EXPECTED}"
    assert "hunter2-secret" not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:a@b@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        (
            "postgresql://h/db?password=topsecret&sslmode=require",
            "postgresql://h/db?password=***&sslmode=require",
        ),
        ("sqlite:////srv/calls.db", "sqlite:////srv/calls.db"),
    ],
)
def test_redaction(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_password_is_found_for_the_log_redactor() -> None:
    assert url_password("postgresql://u:p%40ss@h/db") == "p@ss"
    assert url_password("postgresql://h/db?password=topsecret") == "topsecret"
    assert url_password("postgresql://u@h/db") is None


def test_a_short_reason_is_one_line_without_secrets() -> None:
    exc = RuntimeError("could not connect with hunter2-secret\nsecond line\nthird")
    assert short_reason(exc, ("hunter2-secret",)) == "RuntimeError: could not connect with ***"
    assert short_reason(ValueError()) == "ValueError"
    assert len(short_reason(ValueError("x" * 1000))) < 230
