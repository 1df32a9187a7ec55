"""A real PostgreSQL server for the records tests, from the Debian `postgresql` package.

Why a real server and not a mock: the store's SQL, its types, its transactions and its
reconnects are exactly what a mock would get wrong. The server runs from a temporary
directory on loopback with trust authentication and fsync off, is shared by the whole
test session, and each test gets a schema of its own (the URL's `search_path`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

#: The password put in every URL: trust auth ignores it, and no output may show it.
PASSWORD = "pg-Secret-4f1d9e"
_BIN_GLOB = "/usr/lib/postgresql/*/bin"
_START_ATTEMPTS = 3


def find_bin_dir() -> Path | None:
    """The newest installed server's bin directory (with initdb and pg_ctl), or None."""
    found = [p for p in Path("/").glob(_BIN_GLOB.lstrip("/")) if (p / "initdb").is_file()]
    found = [p for p in found if (p / "pg_ctl").is_file()]
    if not found:
        return None
    return max(found, key=lambda p: _version_key(p.parent.name))


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def missing_reason() -> str:
    return (
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin"
        " (install the Debian package: apt-get install postgresql)"
    )


@dataclass(frozen=True)
class PostgresServer:
    """A running server: `admin_url` reaches its `postgres` database."""

    host: str
    port: int
    user: str

    def url(self, database: str, *, password: str | None = PASSWORD, schema: str = "") -> str:
        auth = f"{self.user}:{password}" if password else self.user
        url = f"postgresql://{auth}@{self.host}:{self.port}/{database}"
        return f"{url}?options=-csearch_path%3D{schema}" if schema else url

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def create_database(self) -> str:
        """A fresh empty database; returns its name."""
        name = f"records_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def create_schema(self, database: str) -> str:
        """A fresh empty schema in `database` (far quicker than a database per test)."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return name

    def drop_schema(self, database: str, name: str) -> None:
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _as_server_user(command: list[str]) -> list[str]:
    """Run as the unprivileged `postgres` user when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *command]
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *command]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(command: list[str]) -> None:
    done = subprocess.run(
        _as_server_user(command), capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
        )


@contextmanager
def running_postgres(bin_dir: Path) -> Iterator[PostgresServer]:
    """Start a throwaway server; stop it (`pg_ctl stop -m fast`) and delete it after."""
    root = Path(tempfile.mkdtemp(prefix="records-pg-"))
    try:
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(root, entry.pw_uid, entry.pw_gid)
        data = root / "data"
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        port = _start(bin_dir, root, data)
        try:
            yield PostgresServer(host="127.0.0.1", port=port, user="postgres")
        finally:
            _run([str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start(bin_dir: Path, root: Path, data: Path) -> int:
    """Start on a free loopback port; a port taken in the meantime means another try."""
    error: RuntimeError | None = None
    for _ in range(_START_ATTEMPTS):
        port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        command = [str(bin_dir / "pg_ctl"), "start", "-D", str(data), "-w", "-t", "60"]
        try:
            _run([*command, "-l", str(root / "server.log"), "-o", options])
            return port
        except RuntimeError as exc:
            error = exc
    log = root / "server.log"
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"PostgreSQL did not start: {error}\n{tail}")
