"""The media hot path under continuous two-way audio: CPU per call-second and tick lateness.

Why a load of its own: `bench_sip_load.py` uses the echo backend, where the model talks
only after the caller stops, so half of each call is quiet one way. Here both sides talk
all the time, which is what decides how many calls a core carries:

* SIPp places N PCMU calls that each stream speech in a loop for the whole call;
* a continuous-talk Realtime server (this file, `--realtime-server PORT`, its own
  process) streams 100 ms deltas of 24 kHz PCM16 speech at 1.1x real time to every
  session, starts a new item every 5 s, answers a cancel with a new response at once,
  and discards the appends;
* `serve` sits between them as in production (custom provider, INFO logs, records off).

The measured window starts once all N calls are live: the agent's CPU over the window
divided by N x window seconds, the media clock's tick lateness (p50/p99 of every tick
since start, ramp-up included, as `/health` reports it) and, over the window only, the
`/metrics` histogram's bucket bounds of p50 and p99 and the share of ticks later than
2 ms. Keep N below the knee (about half a core) to measure cost: a saturated agent
reports the core divided by N, not what a call costs.

    python3 benchmarks/bench_media_path.py [--calls 30] [--seconds 15] [--rounds 3]
        [--baseline DIR]

With `--baseline DIR` (another checkout, e.g. `git worktree add DIR main`) every round
runs that tree's agent too, alternating, against the same SIPp and server; medians of
the rounds and the ratio are printed. Needs `sipp` (Debian sip-tester).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
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
from typing import Any

from telephony_agent.bench.processes import cpu_seconds, free_port, serve_ports, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "tests" / "peers" / "sipp" / "basic_call.xml"
#: Model audio: 100 ms deltas at 1.1x real time, a new item every 50 deltas.
DELTA_MS = 100
PACE = 1.1
DELTAS_PER_ITEM = 50


# ---------------------------------------------------------------------- the model side


class _Talker:
    """One session of the continuous-talk server: ids of the response it is streaming."""

    def __init__(self, connection: Any, number: int) -> None:
        self.connection = connection
        self.number = number
        self.ready = False
        self.sequence = 0
        self.deltas = 0
        self.response_id = ""
        self.item_id = ""

    def begin(self) -> list[str]:
        self.sequence += 1
        self.deltas = 0
        self.response_id = f"resp_{self.number}_{self.sequence}"
        self.item_id = f"item_{self.number}_{self.sequence}"
        created = {"type": "response.created", "response": {"id": self.response_id}}
        item = {
            "type": "response.output_item.added",
            "response_id": self.response_id,
            "item": {"id": self.item_id, "type": "message", "role": "assistant"},
        }
        return [json.dumps(created), json.dumps(item)]

    def end(self, status: str) -> list[str]:
        ref = {"response_id": self.response_id, "item_id": self.item_id}
        done = {"type": "response.output_audio.done", **ref}
        response = {"type": "response.done", "response": {"id": self.response_id, "status": status}}
        return [json.dumps(done), json.dumps(response)]


async def _realtime_server(port: int) -> None:
    """Stream model speech to every session, one shared pacing loop for all of them."""
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    from telephony_agent.media.audiofile import decode_audio_file

    sample = Path(str(files("telephony_agent") / "samples" / "book_flight.wav"))
    speech = decode_audio_file(sample, 24000)
    step = 24000 * DELTA_MS // 1000
    chunks = [
        base64.b64encode(speech[i : i + step].astype("<i2").tobytes()).decode("ascii")
        for i in range(0, speech.size - step + 1, step)
    ]
    talkers: dict[Any, _Talker] = {}
    counter = 0

    async def session(connection: ServerConnection) -> None:
        nonlocal counter
        counter += 1
        talker = _Talker(connection, counter)
        await connection.send(json.dumps({"type": "session.created", "session": {}}))
        try:
            async for message in connection:
                if isinstance(message, bytes) or '"input_audio_buffer.append"' in message[:40]:
                    continue
                event = json.loads(message)
                kind = event.get("type")
                if kind == "session.update":
                    reply = {"type": "session.updated", "session": event.get("session", {})}
                    await connection.send(json.dumps(reply))
                    if not talker.ready:
                        talker.ready = True
                        for text in talker.begin():
                            await connection.send(text)
                        talkers[connection] = talker
                elif kind == "response.cancel" and talker.ready:
                    for text in (*talker.end("cancelled"), *talker.begin()):
                        await connection.send(text)
        except ConnectionClosed:
            pass  # the call ended: the agent closed its session
        finally:
            talkers.pop(connection, None)

    async def pace() -> None:
        interval = DELTA_MS / 1000.0 / PACE
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        index = 0
        while True:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            audio = chunks[index % len(chunks)]
            index += 1
            sends = []
            for talker in list(talkers.values()):
                texts = [
                    '{"type":"response.output_audio.delta","response_id":"'
                    + talker.response_id
                    + '","item_id":"'
                    + talker.item_id
                    + '","delta":"'
                    + audio
                    + '"}'
                ]
                talker.deltas += 1
                if talker.deltas >= DELTAS_PER_ITEM:
                    texts += talker.end("completed") + talker.begin()
                sends.append(_send_all(talker.connection, texts))
            await asyncio.gather(*sends, return_exceptions=True)

    async with serve(session, "127.0.0.1", port, max_size=None, compression=None):
        await pace()


async def _send_all(connection: Any, texts: list[str]) -> None:
    for text in texts:
        await connection.send(text)


# ---------------------------------------------------------------------- one round


def fetch(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return str(response.read().decode())


def lateness_buckets(metrics: str) -> dict[float, float]:
    """The tick lateness histogram: upper bound in ms -> ticks at or under it."""
    buckets: dict[float, float] = {}
    for line in metrics.splitlines():
        match = re.match(r'\w*media_tick_lateness_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if match is not None:
            buckets[float(match.group(1)) * 1000.0] = float(match.group(2))
    return buckets


def window_lateness(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    """Over the measured window only: the bucket bounds of p50 and p99, and the share of
    ticks later than 2 ms."""
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = counts.get(float("inf"), 0.0)
    result = {"late_2ms_pct": 100.0 * (total - counts.get(2.0, 0.0)) / max(1.0, total)}
    for name, share in (("window_p50", 0.5), ("window_p99", 0.99)):
        result[name] = next((b for b, c in counts.items() if c >= share * total), float("inf"))
    return result


def _count_events(stream: Any, counts: dict[str, int]) -> None:
    """Read serve's log lines as they come (the pipe must never fill) and count events."""
    for line in stream:
        match = re.search(r'"event": ?"(\w+)"', line)
        if match is not None:
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1


def scenario(hold_ms: int) -> str:
    """The basic SIPp call, streaming its speech in a loop for the whole call."""
    text = SCENARIO.read_text()
    text = text.replace('rtp_stream="speech_8k.ulaw,1,0"', 'rtp_stream="speech_8k.ulaw,-1,0"')
    return re.sub(r'<pause milliseconds="\d+"/>', f'<pause milliseconds="{hold_ms}"/>', text)


def one_round(
    calls: int, seconds: float, workdir: Path, server_port: int, source: Path
) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("API_KEY")}
    env["PYTHONPATH"] = str(source)
    config = workdir / "agent.toml"
    config.write_text(
        "[provider]\n"
        'name = "custom"\n'
        f'url = "ws://127.0.0.1:{server_port}/v1/realtime"\n'
        'dialect = "ga"\n'
        'g711_passthrough = "off"\n'
        "[sip]\n"
        'listen = "127.0.0.1:0"\n'
        'transports = "udp"\n'
        f"max_calls = {calls + 10}\n"
        "[rtp]\nport_min = 24000\nport_max = 27999\n"
        '[http]\nlisten = "127.0.0.1:0"\n'
        '[log]\nlevel = "info"\nformat = "json"\n'
        f'[records]\nenabled = false\nrecord = false\ndata_dir = "{workdir / "data"}"\n'
    )
    rate = 50
    ramp_s = calls / rate + 3.0
    (workdir / "call.xml").write_text(scenario(int((ramp_s + seconds + 2.0) * 1000)))
    server = subprocess.Popen(
        [sys.executable, "-m", "telephony_agent", "serve", "--config", str(config)],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    sipp: subprocess.Popen[bytes] | None = None
    try:
        assert server.stderr is not None
        sip_port, http_port = serve_ports(server.stderr)
        # INFO logs go on being read (and dropped) so the pipe never blocks serve.
        counts: dict[str, int] = {}
        reader = threading.Thread(target=_count_events, args=(server.stderr, counts), daemon=True)
        reader.start()
        sipp = subprocess.Popen(
            [
                "sipp",
                f"127.0.0.1:{sip_port}",
                "-sf",
                "call.xml",
                "-m",
                str(calls),
                "-l",
                str(calls),
                "-r",
                str(rate),
                "-i",
                "127.0.0.1",
                "-p",
                str(free_port()),
                "-mp",
                str(free_port()),
                "-timeout",
                "120s",
                "-nostdin",
            ],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + ramp_s + 10
        while json.loads(fetch(http_port, "/health"))["active_calls"] < calls:
            if time.monotonic() > deadline:
                raise RuntimeError("not every call was answered")
            time.sleep(0.1)
        time.sleep(1.0)  # greetings asked, sessions streaming
        before = lateness_buckets(fetch(http_port, "/metrics"))
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = cpu_seconds(server.pid), time.monotonic()
        window = window_lateness(before, lateness_buckets(fetch(http_port, "/metrics")))
        health = json.loads(fetch(http_port, "/health"))
        live = float(health["active_calls"])
        return {
            "cpu_ms": (cpu1 - cpu0) / (calls * (t1 - t0)) * 1000.0,
            "core_pct": (cpu1 - cpu0) / (t1 - t0) * 100.0,
            "lateness_p50": float(health["media_clock_lateness_p50_ms"]),
            "lateness_p99": float(health["media_clock_lateness_p99_ms"]),
            **window,
            "live": live,
            "underruns": float(health.get("playout_underruns", 0)),
            "barge_ins": float(counts.get("barge_in", 0)),
        }
    finally:
        if sipp is not None:
            sipp.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                sipp.wait(10)
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def _report(label: str, rounds: list[dict[str, float]]) -> dict[str, float]:
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(
        f"{label:<28} CPU {median['cpu_ms']:6.2f} ms/call-s ({median['core_pct']:4.0f} % core)"
        f"  lateness p50 {median['lateness_p50']:5.2f} p99 {median['lateness_p99']:6.2f} ms"
        f" (window: p50 <= {median['window_p50']:g}, p99 <= {median['window_p99']:g} ms,"
        f" {median['late_2ms_pct']:.2f} % > 2 ms)  live {median['live']:.0f}"
        f"  underruns {median['underruns']:.0f}  barge-ins {median['barge_ins']:.0f}"
    )
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another source tree, measured alternately")
    parser.add_argument("--realtime-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.realtime_server is not None:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_realtime_server(args.realtime_server))
        return
    if args.baseline is not None and not (args.baseline / "telephony_agent").is_dir():
        raise SystemExit(f"--baseline {args.baseline}: no telephony_agent package there")
    if shutil.which("sipp") is None:
        raise SystemExit("sipp is not installed (Debian package sip-tester)")
    from telephony_agent.audio.g711 import ulaw_encode
    from telephony_agent.media.audiofile import decode_audio_file

    server_port = free_port()
    model = subprocess.Popen(
        [sys.executable, __file__, "--realtime-server", str(server_port)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        wait_for_port(server_port)
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            sample = Path(str(files("telephony_agent") / "samples" / "book_flight.wav"))
            (workdir / "speech_8k.ulaw").write_bytes(
                ulaw_encode(decode_audio_file(sample, 8000)).tobytes()
            )
            ours: list[dict[str, float]] = []
            base: list[dict[str, float]] = []
            for number in range(args.rounds):
                if args.baseline is not None:
                    base.append(
                        one_round(args.calls, args.seconds, workdir, server_port, args.baseline)
                    )
                    _report(f"  round {number + 1} baseline", base[-1:])
                ours.append(one_round(args.calls, args.seconds, workdir, server_port, ROOT))
                _report(f"  round {number + 1} this tree", ours[-1:])
    finally:
        model.terminate()
        model.wait(10)
    print(f"{args.calls} calls, {args.seconds:.0f} s held, medians of {args.rounds} rounds:")
    mine = _report("this tree", ours)
    if base:
        theirs = _report(f"baseline ({args.baseline})", base)
        print(f"CPU ratio this tree / baseline: {mine['cpu_ms'] / theirs['cpu_ms']:.3f}")


if __name__ == "__main__":
    main()
