"""Kamailio from the distribution, run by a test with the shipped `deploy/kamailio/` config.

Why the shipped file and not a test copy: the scale-out test is only worth something
if it exercises what operators deploy. Ports, the dispatcher list and timers are the
config's own pre-processor defines, given with `-A`.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from telephony_agent.sip.message import SipResponse
from telephony_agent.sip.parser import parse_message
from tests.server.raw_sip import request

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "kamailio" / "kamailio.cfg"
KAMAILIO = shutil.which("kamailio") or (
    "/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None
)


@dataclass
class Kamailio:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def options(port: int, within_s: float = 1.0) -> SipResponse | None:
    """One OPTIONS to 127.0.0.1:`port`; its final response, or None on silence."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(within_s)
        local = int(sock.getsockname()[1])
        text = request("OPTIONS", port, local).replace(
            f"sip:agent@127.0.0.1:{port}", f"sip:127.0.0.1:{port}", 1
        )
        sock.sendto(text.encode(), ("127.0.0.1", port))
        try:
            while True:
                message = parse_message(sock.recv(65536))
                if isinstance(message, SipResponse) and message.status >= 200:
                    return message
        except TimeoutError:
            return None


def start_kamailio(
    workdir: Path,
    port: int,
    destinations: list[tuple[str, int]],
    *,
    probe_interval_s: int = 1,
    fr_timer_ms: int = 2000,
) -> Kamailio:
    """Kamailio on udp:127.0.0.1:`port` dispatching to `destinations` (name, SIP port)."""
    assert KAMAILIO is not None
    workdir.mkdir(parents=True, exist_ok=True)
    listing = workdir / "dispatcher.list"
    listing.write_text(
        "".join(f"1 sip:127.0.0.1:{sip_port} 0 0 duid={name}\n" for name, sip_port in destinations),
        encoding="utf-8",
    )
    log_path = workdir / "kamailio.log"
    command = [
        KAMAILIO,
        "-DD",  # stay in the foreground, so the test owns the process
        "-E",  # log to stderr
        "-f",
        str(CONFIG),
        "-Y",
        str(workdir),
        "-m",
        "64",
        "-M",
        "8",
        "-A",
        f"LISTEN=udp:127.0.0.1:{port}",
        "-A",
        f'DISPATCHER_LIST="{listing}"',
        "-A",
        f"PROBE_INTERVAL={probe_interval_s}",
        "-A",
        f"FR_TIMER_MS={fr_timer_ms}",
        "-A",
        "LOG_LEVEL=2",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=workdir
        )
    proxy = Kamailio(port, process, log_path)
    deadline = time.monotonic() + 15
    while True:
        answer = options(port)
        if answer is not None and answer.status == 200:
            return proxy
        if process.poll() is not None or time.monotonic() > deadline:
            proxy.stop()
            tail = "\n".join(proxy.log_text().splitlines()[-30:])
            raise RuntimeError(f"kamailio did not start (exit {process.returncode}):\n{tail}")
        time.sleep(0.1)
