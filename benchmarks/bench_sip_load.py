"""Concurrent SIP calls with audio against `telephony-agent serve`: CPU per call-second.

Three processes, so each one's CPU is its own: the local Realtime backend
(`telephony-agent local-backend`, echo), the agent (`serve`, pointed at that
backend as a custom provider), and SIPp placing N calls that each stream 3.4 s
of G.711 speech and stay on the line while the echo comes back. The agent's
CPU divided by the call-seconds it served is the figure that decides how many
calls a core holds; the backend's and SIPp's are printed for comparison.

    python3 benchmarks/bench_sip_load.py [--calls 50] [--rounds 3] [--baseline DIR]
        [--passthrough off|on|compare]

With `--baseline DIR` (another checkout of the source, e.g. `git worktree add DIR
main`), every round runs the agent from that tree too, alternating, so a change is
judged against its baseline under the same machine load; the ratio is printed.

`--passthrough` sets `[provider] g711_passthrough` of this tree's agent (the backend
takes `audio/pcmu`, so "on" passes the calls' G.711 through untouched); "compare" runs
it on and off alternately in every round and prints the ratio. The baseline runs as its
own tree's default.

Needs `sipp` (Debian sip-tester). Prints medians over the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from importlib.resources import files
from pathlib import Path

from telephony_agent.audio.g711 import ulaw_encode
from telephony_agent.bench.processes import cpu_seconds, free_port, serve_ports, wait_for_port
from telephony_agent.media.audiofile import decode_audio_file

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "tests" / "peers" / "sipp" / "basic_call.xml"


def health(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
        data: dict[str, float] = json.loads(response.read())
        return data


def one_round(
    calls: int,
    workdir: Path,
    *,
    latency: bool = False,
    source: Path | None = None,
    records: bool = False,
    passthrough: str | None = None,
) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("API_KEY")}
    # The agent imports the package from the tree measured, the backend always from this
    # one (whatever checkout happens to be installed), so both rounds face the same peer.
    env["PYTHONPATH"] = str(source or ROOT)
    backend_port = free_port()
    backend = subprocess.Popen(
        [sys.executable, "-m", "telephony_agent", "local-backend", "--port", str(backend_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    config = workdir / "agent.toml"
    config.write_text(
        "[provider]\n"
        'name = "custom"\n'
        f'url = "ws://127.0.0.1:{backend_port}/v1/realtime"\n'
        'dialect = "ga"\n'
        + (f'g711_passthrough = "{passthrough}"\n' if passthrough is not None else "")
        + "[sip]\n"
        'listen = "127.0.0.1:0"\n'
        'transports = "udp"\n'
        f"max_calls = {calls + 10}\n"
        "[rtp]\nport_min = 24000\nport_max = 27999\n"
        '[http]\nlisten = "127.0.0.1:0"\n'
        f'[log]\nlevel = "{"info" if latency else "warning"}"\nformat = "json"\n'
    )
    if source is None or "RecordsSettings" in (source / "telephony_agent/config.py").read_text():
        # (a baseline tree from before records has no [records] section to set)
        on = "true" if records else "false"
        data = workdir / "data"
        config.write_text(
            config.read_text() + f'[records]\nenabled = {on}\nrecord = {on}\ndata_dir = "{data}"\n'
        )
    server = subprocess.Popen(
        [sys.executable, "-m", "telephony_agent", "serve", "--config", str(config)],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_for_port(backend_port)
        assert server.stderr is not None
        sip_port, http_port = serve_ports(server.stderr)
        ended: list[dict[str, float]] = []
        refused: list[str] = []
        reader = threading.Thread(
            target=_collect_call_ends, args=(server, ended, refused), daemon=True
        )
        reader.start()
        server_cpu0, backend_cpu0 = cpu_seconds(server.pid), cpu_seconds(backend.pid)
        started = time.monotonic()
        sipp = subprocess.Popen(
            [
                "sipp",
                f"127.0.0.1:{sip_port}",
                "-sf",
                SCENARIO.name,
                "-m",
                str(calls),
                "-l",
                str(calls),
                "-r",
                "50",
                "-i",
                "127.0.0.1",
                "-p",
                str(free_port()),
                "-mp",
                str(free_port()),
                "-timeout",
                "60s",
                "-timeout_error",
                "-nostdin",
            ],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sipp_cpu = 0.0
        while sipp.poll() is None:
            sipp_cpu = max(sipp_cpu, cpu_seconds(sipp.pid))
            time.sleep(0.2)
        wall = time.monotonic() - started
        if sipp.returncode != 0:
            raise RuntimeError(f"sipp failed with exit code {sipp.returncode}")
        deadline = time.monotonic() + 10
        stats = health(http_port)
        while stats["completed"] < calls and time.monotonic() < deadline:
            time.sleep(0.1)
            stats = health(http_port)
        server_cpu = cpu_seconds(server.pid) - server_cpu0
        backend_cpu = cpu_seconds(backend.pid) - backend_cpu0
        call_seconds = stats["call_seconds"]
        bridge = _bridge_latency(ended)
        return {
            **bridge,
            "wall_s": wall,
            "call_seconds": call_seconds,
            "server_ms": server_cpu / call_seconds * 1000,
            "backend_ms": backend_cpu / call_seconds * 1000,
            "sipp_ms": sipp_cpu / call_seconds * 1000,
            "lateness_p50": stats["media_clock_lateness_p50_ms"],
            "lateness_p99": stats["media_clock_lateness_p99_ms"],
            "answered": stats["answered"],
            "underruns": float(stats.get("playout_underruns", 0)),
            "g711_refused": float(len(refused)),
        }
    finally:
        for process in (server, backend):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def _collect_call_ends(
    server: subprocess.Popen[str], ended: list[dict[str, float]], refused: list[str]
) -> None:
    """Call-end records (info logs only) and G.711 refusals (warnings: always logged)."""
    assert server.stderr is not None
    for line in server.stderr:
        if '"call_ended"' in line:
            with contextlib.suppress(ValueError):
                ended.append(json.loads(line))
        elif '"realtime_g711_refused"' in line:
            refused.append(line)


def _bridge_latency(ended: list[dict[str, float]]) -> dict[str, float]:
    """Median over calls of each call's own p50/p99 bridge latency (info logs only)."""
    result: dict[str, float] = {}
    for key in ("uplink_p50_ms", "uplink_p99_ms", "downlink_p50_ms", "downlink_p99_ms"):
        values = [float(e[key]) for e in ended if key in e]
        result[key] = statistics.median(values) if values else float("nan")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--latency",
        action="store_true",
        help="log each call's end (costs CPU) to report the bridge latency across calls",
    )
    parser.add_argument(
        "--records",
        choices=["off", "on", "compare"],
        default="off",
        help="call records and stereo recordings: off, on, or both alternately (same run)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another source tree of the agent, measured alternately in the same run",
    )
    parser.add_argument(
        "--passthrough",
        choices=["off", "on", "compare"],
        default="off",
        help="G.711 passthrough of this tree's agent: off, on, or both alternately (same run)",
    )
    args = parser.parse_args()
    if args.baseline is not None and not (args.baseline / "telephony_agent").is_dir():
        raise SystemExit(f"--baseline {args.baseline}: no telephony_agent package there")
    if shutil.which("sipp") is None:
        raise SystemExit("sipp is not installed (Debian package sip-tester)")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        shutil.copy(SCENARIO, workdir / SCENARIO.name)
        sample = Path(str(files("telephony_agent") / "samples" / "book_flight.wav"))
        (workdir / "speech_8k.ulaw").write_bytes(
            ulaw_encode(decode_audio_file(sample, 8000)).tobytes()
        )
        results: list[dict[str, float]] = []
        baseline: list[dict[str, float]] = []
        kept: list[dict[str, float]] = []
        passed: list[dict[str, float]] = []
        mode = "on" if args.passthrough == "on" else "off"
        for _ in range(args.rounds):
            if args.baseline is not None:
                baseline.append(
                    one_round(args.calls, workdir, latency=args.latency, source=args.baseline)
                )
            if args.records == "compare":
                kept.append(
                    one_round(
                        args.calls, workdir, latency=args.latency, records=True, passthrough=mode
                    )
                )
            if args.passthrough == "compare":
                passed.append(
                    one_round(args.calls, workdir, latency=args.latency, passthrough="on")
                )
            on = args.records == "on"
            results.append(
                one_round(args.calls, workdir, latency=args.latency, records=on, passthrough=mode)
            )
    if baseline:
        _report(args, baseline, f"baseline ({args.baseline})")
        print()
    if kept:
        _report(args, kept, "this tree, records and recordings on")
        print()
    if passed:
        _report(args, passed, "this tree, G.711 passthrough on")
        print()
    label = "this tree" + {"on": ", records on", "compare": ", records off"}.get(args.records, "")
    label += f", G.711 passthrough {mode}"
    median = _report(args, results, label)
    for name, other in (("baseline", baseline), ("records on", kept), ("passthrough on", passed)):
        if other:
            base = statistics.median(r["server_ms"] for r in other)
            jitter = statistics.median(r["lateness_p99"] for r in other)
            print(
                f"agent CPU per call-second, {label} / {name}: {median['server_ms']:.2f} / "
                f"{base:.2f} ms = {median['server_ms'] / base:.3f}; clock lateness p99 "
                f"{median['lateness_p99']:.2f} / {jitter:.2f} ms"
            )


def _report(
    args: argparse.Namespace, results: list[dict[str, float]], label: str
) -> dict[str, float]:
    median = {key: statistics.median(r[key] for r in results) for key in results[0]}
    print(f"[{label}]")
    print(f"{args.calls} concurrent G.711 calls, {args.rounds} rounds (medians):")
    print(f"  answered per round           {median['answered']:.0f}")
    seconds, wall = median["call_seconds"], median["wall_s"]
    print(f"  call-seconds per round       {seconds:.0f} in {wall:.1f} s wall")
    print(
        f"  agent CPU per call-second    {median['server_ms']:.2f} ms"
        f"  (~{1000 / median['server_ms']:.0f} calls per core)"
    )
    print(f"  backend CPU per call-second  {median['backend_ms']:.2f} ms (local echo backend)")
    print(f"  SIPp CPU per call-second     {median['sipp_ms']:.2f} ms (the peer, for scale)")
    if args.latency:
        print(
            f"  bridge uplink (RTP in -> ws sent)  p50 {median['uplink_p50_ms']:.2f} ms,"
            f" p99 {median['uplink_p99_ms']:.2f} ms (median over calls)"
        )
        print(
            f"  bridge downlink (delta in -> RTP out)  p50 {median['downlink_p50_ms']:.2f} ms,"
            f" p99 {median['downlink_p99_ms']:.2f} ms (median over calls)"
        )
    print(
        f"  media clock lateness         p50 {median['lateness_p50']:.2f} ms,"
        f" p99 {median['lateness_p99']:.2f} ms"
    )
    print(f"  playout underruns per round  {median['underruns']:.0f}")
    print(f"  G.711 refused, fell back     {median['g711_refused']:.0f}")
    return median


if __name__ == "__main__":
    main()
