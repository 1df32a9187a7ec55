"""The SIP surface under abuse: memory across fuzz rounds, an INVITE flood, session costs.

Parts (all by default):

* ``rss`` — `telephony-agent serve` gets a warm-up round and then three rounds of
  mutated SIP (`telephony_agent.fuzz.wire`, 90 % UDP, 10 % TCP); after each round,
  once its calls have ended, the process's RSS and /health counters are printed.
  Flat means the three measured rounds within ±10 % of each other.
* ``flood`` — 300 never-ACKed INVITEs from 127.0.0.2 in one burst, while the `call`
  command dials from 127.0.0.1: is the real caller answered, how many flood calls
  got a Realtime session, and for how many session-seconds in all.
* ``connect`` — how long a Realtime session takes to be ready: the local backend,
  and with ``--provider NAME`` (its key in the environment) that provider too.
* ``ack`` — how long after our 200 OK the caller's ACK arrives (the `call` command
  on loopback), which with ``connect`` decides when a session is worth opening.
* ``tracemalloc`` — an in-process server, rounds of mutated SIP, and the allocation
  sites that grew between the last two rounds.

    python3 benchmarks/bench_sip_abuse.py [--part rss|flood|connect|ack|tracemalloc]
        [--messages 25000] [--rounds 3] [--baseline DIR] [--provider NAME]

With ``--baseline DIR`` (another checkout, e.g. ``git worktree add DIR main``) the
``rss`` and ``flood`` parts run against that tree too, in the same run, for a
before/after. Numbers are printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from telephony_agent.fuzz.wire import SipMutator, WireTarget

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "telephony_agent" / "samples" / "book_flight.wav"
READY = re.compile(r"answering SIP on [^:\s]+:(\d+) .*health on http://[^:/\s]+:(\d+)/health")


# ---------------------------------------------------------------------- a serve process


class Serve:
    """`telephony-agent serve` from `source` (this tree by default), JSON logs to a file."""

    def __init__(self, workdir: Path, settings: str, source: Path | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "serve.log"
        config = workdir / "agent.toml"
        config.write_text(settings + f'\n[records]\nenabled = false\ndata_dir = "{workdir}"\n')
        env = {k: v for k, v in os.environ.items() if not k.endswith("API_KEY")}
        env["PYTHONPATH"] = str(source or ROOT)
        env["PYTHONUNBUFFERED"] = "1"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "telephony_agent",
                    "serve",
                    "--config",
                    str(config),
                    "--sip-listen",
                    "127.0.0.1:0",
                    "--http-listen",
                    "127.0.0.1:0",
                    "--provider",
                    "local",
                ],
                cwd=workdir,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
            )
        deadline = time.monotonic() + 20
        while True:
            match = READY.search(self.log_path.read_text(errors="replace"))
            if match:
                self.sip_port, self.http_port = int(match[1]), int(match[2])
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("serve did not start:\n" + self.log_path.read_text()[-2000:])
            time.sleep(0.05)

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.http_port}/health"
        with urllib.request.urlopen(url, timeout=10) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        return 0.0

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if record.get("event") == name:
                        found.append(record)
        return found

    def tracebacks(self) -> int:
        return self.log_path.read_text(errors="replace").count("Traceback")

    def settle(self, timeout_s: float = 120.0) -> dict[str, Any]:
        """/health once no call is set up, running or waiting for its ACK."""
        deadline = time.monotonic() + timeout_s
        while True:
            health = self.health()
            idle = health["active_calls"] == 0 and health.get("sip_pending_calls", 0) == 0
            if idle or time.monotonic() > deadline:
                return health
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def settings_toml(t1_ms: int = 500, extra: str = "") -> str:
    return (
        '[provider]\nname = "local"\n'
        f'[sip]\ntransports = "udp+tcp"\nt1_ms = {t1_ms}\n{extra}'
        "[rtp]\nport_min = 24000\nport_max = 27999\ninactivity_timeout_s = 5\n"
        '[log]\nlevel = "info"\nformat = "json"\n'
    )


# ---------------------------------------------------------------------- rss


class _Drain:
    """Reads and discards a UDP socket's replies on a thread (so it never fills)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._stop = threading.Event()
        self.count = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                self._sock.recv(65535)
                self.count += 1
            except TimeoutError:
                continue
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def fuzz_round(port: int, messages: int, seed: int, per_second: float) -> None:
    """`messages` mutated requests: nine in ten over UDP, one in ten over TCP."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        drain = _Drain(udp)
        udp_target = WireTarget("127.0.0.1", port, "127.0.0.1", udp.getsockname()[1])
        udp_mutator = SipMutator(udp_target, seed=seed)
        tcp_mutator = SipMutator(
            WireTarget("127.0.0.1", port, "127.0.0.1", 5099, transport="TCP"), seed=seed + 1
        )
        tcp: socket.socket | None = None
        started = time.monotonic()
        for n in range(messages):
            if n % 10 == 9:
                tcp = _send_tcp(tcp, port, tcp_mutator.message())
            else:
                with contextlib.suppress(OSError):
                    udp.sendto(udp_mutator.message(), ("127.0.0.1", port))
            ahead = (n + 1) / per_second - (time.monotonic() - started)
            if ahead > 0.005:
                time.sleep(ahead)
        if tcp is not None:
            tcp.close()
        time.sleep(0.5)
        drain.stop()


def _send_tcp(conn: socket.socket | None, port: int, data: bytes) -> socket.socket | None:
    for _ in range(2):
        if conn is None:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=2)
                conn.setblocking(False)
            except OSError:
                return None
        try:
            conn.sendall(data)
            with contextlib.suppress(BlockingIOError):
                while conn.recv(65535):
                    pass
            return conn
        except OSError:  # the server closed a stream it could not frame: a new one
            conn.close()
            conn = None
    return conn


def part_rss(args: argparse.Namespace, source: Path | None, label: str) -> None:
    print(f"\n== rss ({label}): warm-up + {args.rounds} rounds of {args.messages} messages")
    with tempfile.TemporaryDirectory() as work:
        serve = Serve(Path(work), settings_toml(t1_ms=100), source)
        try:
            rss: list[float] = []
            for round_ in range(args.rounds + 1):
                began = time.monotonic()
                fuzz_round(serve.sip_port, args.messages, 1000 + round_, args.rate)
                sent_s = time.monotonic() - began
                health = serve.settle()
                time.sleep(5.0)  # dialogs linger 32*T1 for late BYEs; transactions 64*T1
                rss.append(serve.rss_mb())
                name = "warm-up" if round_ == 0 else f"round {round_}"
                print(
                    f"{name}: sent in {sent_s:.1f} s, RSS {rss[-1]:.1f} MB; "
                    + ", ".join(
                        f"{k} {health.get(k)}"
                        for k in (
                            "invites",
                            "answered",
                            "active_calls",
                            "sip_bad_requests",
                            "sip_malformed_dropped",
                            "sip_internal_errors",
                            "sip_refused_rate",
                            "sip_refused_source_pending",
                            "sip_udp_drops",
                        )
                    )
                )
            measured = rss[1:]
            spread = (max(measured) - min(measured)) / min(measured) * 100.0
            print(
                f"RSS over the {len(measured)} measured rounds: "
                + ", ".join(f"{v:.1f}" for v in measured)
                + f" MB; spread {spread:.1f} % (flat: within 10 %); "
                f"tracebacks in the log: {serve.tracebacks()}"
            )
        finally:
            serve.stop()


# ---------------------------------------------------------------------- flood


def _flood_invite(port: int, local_port: int, n: int) -> bytes:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
        "m=audio 9 RTP/AVP 0\r\n"
    )
    return (
        f"INVITE sip:agent@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.2:{local_port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:scanner@127.0.0.2>;tag={n}\r\n"
        f"To: <sip:agent@127.0.0.1:{port}>\r\n"
        f"Call-ID: flood-{n}-{secrets.token_hex(4)}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:scanner@127.0.0.2:{local_port}>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


def _when(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00")).timestamp()


def part_flood(args: argparse.Namespace, source: Path | None, label: str) -> None:
    print(f"\n== flood ({label}): 300 never-ACKed INVITEs from 127.0.0.2, a caller from 127.0.0.1")
    with tempfile.TemporaryDirectory() as work:
        serve = Serve(Path(work), settings_toml(), source)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
                flood.bind(("127.0.0.2", 0))
                drain = _Drain(flood)
                started = time.monotonic()
                for n in range(300):
                    flood.sendto(
                        _flood_invite(serve.sip_port, flood.getsockname()[1], n),
                        ("127.0.0.1", serve.sip_port),
                    )
                burst_s = time.monotonic() - started
                env = {k: v for k, v in os.environ.items() if not k.endswith("API_KEY")}
                env["PYTHONPATH"] = str(ROOT)
                caller = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "telephony_agent",
                        "call",
                        f"sip:agent@127.0.0.1:{serve.sip_port}",
                        "--play",
                        str(SAMPLE),
                        "--codecs",
                        "PCMU",
                        "--duration",
                        "6",
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                print(
                    f"burst sent in {burst_s * 1000:.0f} ms; the real caller: "
                    f"{caller.stdout.strip() or caller.stderr.strip()[-200:]}"
                )
                health = serve.settle(timeout_s=90)
                drain.stop()
            admitted = [r for r in serve.events("call_admitted") if "flood-" in str(r)]
            ends: dict[str, float] = {}
            for event in ("session_closed_awaiting_ack", "call_finished"):
                for record in serve.events(event):
                    call_id = str(record.get("call_id", ""))
                    if call_id.startswith("flood-") and call_id not in ends:
                        ends[call_id] = _when(record)
            held = sum(ends.get(str(r["external_id"]), _when(r)) - _when(r) for r in admitted)
            print(
                f"flood calls admitted (a Realtime session each): {len(admitted)}, "
                f"session-seconds held for them: {held:.0f}; "
                f"refused: rate {health.get('sip_refused_rate', '-')}, "
                f"per address {health.get('sip_refused_source_pending', '-')}, "
                f"in total {health.get('sip_refused_pending', '-')}, "
                f"busy {health.get('rejected_busy')}; "
                f"tracebacks in the log: {serve.tracebacks()}"
            )
        finally:
            serve.stop()


# ---------------------------------------------------------------------- connect and ack


async def _connect_times(provider: str, count: int) -> list[float]:
    from telephony_agent.commands.runtime import open_provider
    from telephony_agent.config import load_settings
    from telephony_agent.switchboard import CallRequest, Switchboard
    from telephony_agent.switchboard.request import Refusal

    overrides: dict[str, dict[str, Any]] = {"provider": {"name": provider}}
    overrides["log"] = {"level": "error"}
    settings = load_settings(None, overrides=overrides)
    runtime = await open_provider(settings)
    board = Switchboard(runtime.deployment(settings))
    times: list[float] = []
    try:
        for n in range(count):
            request = CallRequest(kind="sip", external_id=f"bench-{n}", caller="c", dialled="a")
            admission = board.admit(request)
            assert not isinstance(admission, Refusal)
            session = admission.new_session()
            began = time.perf_counter()
            await session.connect()
            times.append((time.perf_counter() - began) * 1000.0)
            await session.close()
            admission.release("bench")
    finally:
        await board.close()
        await runtime.close()
    return times


def part_connect(args: argparse.Namespace) -> None:
    providers = ["local"] + ([args.provider] if args.provider else [])
    for provider in providers:
        times = sorted(asyncio.run(_connect_times(provider, 30 if provider == "local" else 5)))
        print(
            f"\n== connect: a {provider} Realtime session is ready in "
            f"median {statistics.median(times):.1f} ms, max {times[-1]:.1f} ms (n={len(times)})"
        )


def part_ack(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as work:
        serve = Serve(Path(work), settings_toml())
        try:
            env = {k: v for k, v in os.environ.items() if not k.endswith("API_KEY")}
            env["PYTHONPATH"] = str(ROOT)
            for _ in range(5):
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "telephony_agent",
                        "call",
                        f"sip:agent@127.0.0.1:{serve.sip_port}",
                        "--play",
                        str(SAMPLE),
                        "--codecs",
                        "PCMU",
                        "--duration",
                        "1",
                    ],
                    env=env,
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
            delays = sorted(float(r["after_ms"]) for r in serve.events("call_acked"))
        finally:
            serve.stop()
    if delays:
        print(
            f"\n== ack: the caller's ACK came {statistics.median(delays):.1f} ms (median), "
            f"at most {delays[-1]:.1f} ms after our 200 OK (n={len(delays)}, loopback)"
        )


# ---------------------------------------------------------------------- tracemalloc


async def _tracemalloc(args: argparse.Namespace) -> None:
    from telephony_agent.commands.runtime import open_provider
    from telephony_agent.config import load_settings
    from telephony_agent.logs import configure_logging
    from telephony_agent.server.sip_server import AgentSipServer
    from telephony_agent.switchboard import Switchboard

    configure_logging("error", "json")
    settings = load_settings(
        None,
        environ={},
        overrides={
            "provider": {"name": "local"},
            "sip": {"listen": "127.0.0.1:0", "transports": "udp", "t1_ms": 50},
            "rtp": {"port_min": 30000, "port_max": 31999, "inactivity_timeout_s": 2},
            "log": {"level": "error"},
        },
    )
    runtime = await open_provider(settings, environ={})
    board = Switchboard(runtime.deployment(settings, environ={}))
    server = AgentSipServer(board)
    await server.start()
    loop = asyncio.get_running_loop()
    snapshots = []
    tracemalloc.start(10)
    try:
        for round_ in range(args.rounds + 1):
            await loop.run_in_executor(
                None, fuzz_round, server.sip_port, args.messages // 5, 50 + round_, args.rate
            )
            for _ in range(120):
                await asyncio.sleep(0.25)
                if not (board.active_calls or server._calls or server.endpoint.layer.server_count):
                    break
            gc.collect()
            snapshots.append(tracemalloc.take_snapshot())
            traced = tracemalloc.get_traced_memory()[0] / 1024
            print(f"round {round_}: traced {traced:.0f} KB, calls {len(server._calls)}")
        print("\n== tracemalloc: growth between the last two rounds")
        for stat in snapshots[-1].compare_to(snapshots[-2], "traceback")[:8]:
            print(f"{stat.size_diff / 1024:+.1f} KB in {stat.count_diff:+d} blocks")
            for line in stat.traceback.format()[-4:]:
                print("   ", line)
    finally:
        tracemalloc.stop()
        await server.shutdown(5.0)
        await board.close()
        await runtime.close()


# ---------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--part", choices=["all", "rss", "flood", "connect", "ack", "tracemalloc"], default="all"
    )
    parser.add_argument("--messages", type=int, default=25_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1500.0, help="messages per second")
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--provider", help="also time this provider's session connect")
    args = parser.parse_args()
    trees: list[tuple[Path | None, str]] = [(None, "this tree")]
    if args.baseline is not None:
        trees.append((args.baseline.resolve(), f"baseline {args.baseline}"))
    if args.part in ("all", "connect"):
        part_connect(args)
    if args.part in ("all", "ack"):
        part_ack(args)
    if args.part in ("all", "flood"):
        for source, label in trees:
            part_flood(args, source, label)
    if args.part in ("all", "rss"):
        for source, label in trees:
            part_rss(args, source, label)
    if args.part == "tracemalloc":
        asyncio.run(_tracemalloc(args))


if __name__ == "__main__":
    main()
