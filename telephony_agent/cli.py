"""`telephony-agent` command line: serve, call, dial, demo, ask, local-backend, bench, calls,
config.

Every user mistake ends with one line on stderr and exit code 2; a provider or
network failure ends with one line and exit code 1; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from telephony_agent import __version__
from telephony_agent.errors import UsageError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with our exit code."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="telephony-agent",
        description="Answer phone calls with a Realtime speech model.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    ask = sub.add_parser("ask", help="send one audio file as a question, save the spoken answer")
    ask.add_argument("input", type=Path, help="any audio file (WAV, MP3, OGG, raw .ulaw, ...)")
    ask.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("answer.wav"),
        help="where to write the answer audio (WAV); default answer.wav",
    )
    _common_options(ask, default_log_level="warning")
    ask.add_argument("--instructions", help="system instructions for this question")
    ask.add_argument("--voice", help="voice name (provider specific)")
    ask.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the whole answer (default 60)",
    )

    serve = sub.add_parser("serve", help="answer SIP and browser (WebRTC) calls with the agent")
    _common_options(serve)
    serve.add_argument(
        "--sip-listen", metavar="HOST:PORT", help="SIP address (default 0.0.0.0:5060)"
    )
    serve.add_argument(
        "--http-listen",
        metavar="HOST:PORT",
        help="demo page, WebRTC/WHIP signalling and /health (default 127.0.0.1:8080)",
    )
    serve.add_argument("--max-calls", type=int, help="concurrent calls before 486/503")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run K processes, each on SIP and HTTP port + its index and a slice of the "
        "RTP range (default 1)",
    )
    # Set by the parent of `--workers` on each worker it starts; not for people.
    serve.add_argument("--worker", type=int, help=argparse.SUPPRESS)

    call = sub.add_parser("call", help="dial a SIP URI, speak a file, record what is heard")
    call.add_argument("uri", help="who to call, e.g. sip:agent@127.0.0.1:5060")
    call.add_argument("--play", type=Path, required=True, help="audio file spoken as the caller")
    call.add_argument("--record", type=Path, help="write what the caller heard to this WAV")
    call.add_argument(
        "--duration", type=float, help="seconds before hanging up (default: file + 4 s)"
    )
    call.add_argument("--dtmf", help="digits to press one second into the call")
    call.add_argument("--codecs", default="PCMU,PCMA,G722,opus", help="offered codecs, best first")
    call.add_argument("--transport", choices=["udp", "tcp", "tls"], default="udp")
    call.add_argument(
        "--tls-ca", type=Path, help="PEM CA file that signed the agent's TLS certificate"
    )
    call.add_argument("--srtp", action="store_true", help="offer SRTP (SDES) and require it")
    call.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default="warning"
    )

    demo = sub.add_parser("demo", help="offline showcase: a real SIP call to a local agent")
    _common_options(demo, default_log_level="warning")
    demo.add_argument("--codec", default="PCMU", help="PCMU, PCMA, G722 or opus (default PCMU)")
    demo.add_argument(
        "--record",
        type=Path,
        default=Path("demo-call.wav"),
        help="where to write what the caller heard (default demo-call.wav)",
    )

    backend = sub.add_parser("local-backend", help="serve the built-in Realtime backend")
    backend.add_argument("--host", default="127.0.0.1")
    backend.add_argument("--port", type=int, default=8765)
    backend.add_argument(
        "--behaviour",
        choices=["echo", "tone", "script", "booking", "continuous"],
        default="echo",
        help="continuous: talk without pause (sample speech at 1.1x real time), for bench",
    )
    backend.add_argument("--script", type=Path, help="scripted turns (JSON) for --behaviour script")
    backend.add_argument(
        "--dialect",
        choices=["ga", "beta", "yandex"],
        default="ga",
        help="ga (OpenAI, takes G.711 too), beta, or yandex (behaves as Yandex documents it)",
    )
    backend.add_argument(
        "--models",
        metavar="NAME,...",
        help="serve only these models; any other gets the dialect's model-not-found error",
    )
    backend.add_argument(
        "--realtime-factor",
        type=float,
        help="how much faster than real time audio deltas are sent (default 4; 1.1 continuous)",
    )
    backend.add_argument(
        "--first-delta-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="fault: wait S seconds before each response's first delta",
    )
    backend.add_argument(
        "--close-mid-response",
        type=int,
        metavar="CODE",
        help="fault: close the socket with CODE (e.g. 1011) mid-response, once",
    )
    backend.add_argument(
        "--expire-after",
        type=float,
        metavar="S",
        help="fault: session_expired error and close 1001 after S seconds",
    )
    backend.add_argument(
        "--inject-errors",
        action="store_true",
        help="fault: non-fatal error events and a failed response",
    )
    backend.add_argument(
        "--stats-out",
        type=Path,
        metavar="FILE",
        help="on SIGTERM/SIGINT write counters and per-connection append times as JSON",
    )
    backend.add_argument(
        "--require-key-env",
        metavar="VAR",
        help="reject clients whose key differs from this environment variable",
    )

    bench = sub.add_parser(
        "bench", help="load the agent with continuous two-way calls and print what it did"
    )
    bench.add_argument("--calls", type=int, default=50, help="concurrent calls (default 50)")
    bench.add_argument("--seconds", type=float, default=10.0, help="hold time (default 10)")
    bench.add_argument("--codec", choices=["pcmu", "pcma", "g722", "opus"], default="pcmu")
    bench.add_argument("--workers", type=int, default=1, help="agent processes (default 1)")
    bench.add_argument("--find-max", action="store_true", help="search the largest clean load")
    bench.add_argument(
        "--baseline", action="store_true", help="also run a naive bridge, side by side"
    )
    bench.add_argument("--repeat", type=int, default=1, help="runs per load; medians reported")
    bench.add_argument("--ramp", type=float, default=40.0, help="calls placed per second")
    bench.add_argument("--json", type=Path, metavar="OUT", help="write the rows as JSON")
    bench.add_argument(
        "--max-cpu", type=float, metavar="SHARE", help="the agent's [admission] max_cpu"
    )
    bench.add_argument(
        "--cpu-per-call",
        type=float,
        metavar="SHARE",
        help="the agent's [admission] cpu_per_call",
    )

    calls = sub.add_parser("calls", help="call records: list and show kept calls")
    calls_sub = calls.add_subparsers(dest="calls_command", metavar="ACTION", parser_class=_Parser)
    calls_sub.required = True
    listing = calls_sub.add_parser("list", help="the newest calls, one line each")
    listing.add_argument("--limit", type=int, default=20, help="how many calls (default 20)")
    listing.add_argument("--since", help="only calls offered since this ISO date or time")
    listing.add_argument("--profile", help="only calls of this profile")
    listing.add_argument("--json", action="store_true", help="print a JSON array of records")
    listing.add_argument("--config", type=Path, help="TOML settings file (where records are)")
    show = calls_sub.add_parser("show", help="one call: the record and its dialogue")
    show.add_argument("call_id", help="our call id (or a unique prefix), or the SIP Call-ID")
    show.add_argument("--json", action="store_true", help="print the record as one JSON object")
    show.add_argument("--config", type=Path, help="TOML settings file (where records are)")

    dial = sub.add_parser("dial", help="ask a running serve to place a call with the agent")
    dial.add_argument("to", help="SIP URI (sip:+15550100@trunk.example) or a number")
    dial.add_argument("--profile", help="the profile that speaks on the call")
    dial.add_argument("--registration", help="place it through this [[registrations]] entry")
    dial.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a placeholder value for this call (repeatable)",
    )
    dial.add_argument("--wait", action="store_true", help="wait for the call to end")
    dial.add_argument("--config", type=Path, help="the serve's settings file ([http] listen)")
    dial.add_argument("--server", help="serve's HTTP address (default: from [http] listen)")

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(
        dest="config_command", metavar="ACTION", parser_class=_Parser
    )
    config_sub.required = True
    check = config_sub.add_parser("check", help="validate FILE and print the effective config")
    check.add_argument("file", type=Path)
    check.add_argument(
        "--route",
        metavar="NUMBER",
        action="append",
        default=[],
        help="also print which profile a call to NUMBER reaches (repeatable)",
    )
    return parser


def _common_options(p: argparse.ArgumentParser, default_log_level: str | None = None) -> None:
    p.add_argument("--config", type=Path, help="TOML settings file")
    p.add_argument("--provider", help="yandex, yandex-legacy, openai, custom or local")
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=default_log_level,
        help=f"log level (default: {default_log_level or 'from settings'})",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    from telephony_agent.records import RecordsUnavailable

    try:
        args = build_parser().parse_args(argv)
        return _dispatch(args)
    except RecordsUnavailable as exc:
        print(f"telephony-agent: error: {_safe(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    except UsageError as exc:
        print(f"telephony-agent: error: {_safe(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "ask":
        from telephony_agent.commands.ask import run_ask

        return _run_async(run_ask(args))
    if args.command == "serve":
        from telephony_agent.commands.serve_workers import run_workers, supervises

        if supervises(args):  # before the SIP and media stack is imported: see there
            return _run_async(run_workers(args, args.workers))
        from telephony_agent.commands.serve import run_serve

        return _run_async(run_serve(args))
    if args.command == "call":
        from telephony_agent.commands.call import run_call

        return _run_async(run_call(args))
    if args.command == "demo":
        from telephony_agent.commands.demo import run_demo

        return _run_async(run_demo(args))
    if args.command == "local-backend":
        from telephony_agent.commands.local_backend import run_local_backend

        return _run_async(run_local_backend(args))
    if args.command == "bench":
        from telephony_agent.commands.bench import run_bench

        return run_bench(args)
    if args.command == "dial":
        from telephony_agent.commands.dial import run_dial

        return _run_async(run_dial(args))
    if args.command == "calls":
        from telephony_agent.commands.calls import run_calls

        return run_calls(args)
    if args.command == "config":
        from telephony_agent.commands.config_check import run_config_check

        return run_config_check(args.file, routes=args.route)
    raise UsageError(f"unknown command {args.command!r}")  # pragma: no cover


def _run_async(coro: Any) -> int:
    from telephony_agent.realtime.errors import RealtimeError

    try:
        result: int = asyncio.run(coro)
        return result
    except RealtimeError as exc:
        print(f"telephony-agent: error: {_safe(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE


def _safe(text: str) -> str:
    from telephony_agent.logs import redact_text

    return redact_text(text)
