"""A real Kamailio registrar/proxy for the registration tests, started per test.

Why Kamailio: it is what many operators put in front of (or behind) an agent, and
its digest challenge, location table and record-routing are the behaviour a trunk's
registrar shows; our own registrar would only agree with our own client.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parent / "kamailio" / "registrar.cfg"
MODULE_DIRS = (
    "/usr/lib/x86_64-linux-gnu/kamailio/modules",
    "/usr/lib/aarch64-linux-gnu/kamailio/modules",
    "/usr/lib/kamailio/modules",
)
START_TIMEOUT_S = 10.0


def kamailio_binary() -> str:
    """The kamailio executable; fails under CI (which installs it), skips elsewhere."""
    binary = shutil.which("kamailio") or (
        "/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None
    )
    if binary is None or _module_dir() is None:
        if os.environ.get("CI"):
            pytest.fail("kamailio is not installed (apt-get install kamailio)")
        pytest.skip("kamailio is not installed")
    return binary


def _ha1(user: str, password: str) -> str:
    """db_text refuses empty columns; the precomputed HA1 the subscriber table keeps."""
    return hashlib.md5(f"{user}:127.0.0.1:{password}".encode()).hexdigest()


def _module_dir() -> str | None:
    for candidate in MODULE_DIRS:
        if Path(candidate, "registrar.so").exists():
            return candidate
    return None


class Kamailio:
    """One Kamailio on loopback UDP with one subscriber; stop and start keep the port."""

    def __init__(self, workdir: Path, port: int, users: dict[str, str]) -> None:
        self.workdir = workdir
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        db = workdir / "db"
        db.mkdir(parents=True, exist_ok=True)
        (workdir / "run").mkdir(exist_ok=True)
        (db / "version").write_text(
            "id(int,auto) table_name(string) table_version(int) \n0:subscriber:7\n"
        )
        rows = [
            f"{index}:{user}:127.0.0.1:{password}:{_ha1(user, password)}:"
            f"{_ha1(user + '@127.0.0.1', password)}"
            for index, (user, password) in enumerate(users.items(), start=1)
        ]
        (db / "subscriber").write_text(
            "id(int,auto) username(string) domain(string) password(string) ha1(string) "
            "ha1b(string) \n" + "\n".join(rows) + "\n"
        )
        self.log_path = workdir / "kamailio.log"

    def start(self) -> None:
        binary = kamailio_binary()
        command = [
            binary,
            "-f",
            str(CONFIG),
            "-DD",
            "-E",
            "-Y",
            str(self.workdir / "run"),
            "-A",
            f"LISTEN=udp:127.0.0.1:{self.port}",
            "-A",
            f'DB_URL="text://{self.workdir / "db"}"',
            "-A",
            f'MODULES="{_module_dir()}/"',
        ]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.workdir
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while "mod_init" not in self.log_text() or "Listening on" not in self.log_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kamailio did not start:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)
        time.sleep(0.3)  # the worker processes come up after the main one logs

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def log_text(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")
