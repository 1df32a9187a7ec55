"""`telephony-agent local-backend`: the built-in Realtime server as its own process."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from telephony_agent.errors import UsageError
from telephony_agent.logs import configure_logging
from telephony_agent.realtime.backend import (
    BackendOptions,
    PhraseError,
    ScriptError,
    start_backend,
)
from telephony_agent.realtime.backend.stats import BackendStats

#: The continuous behaviour talks like a provider streaming speech: 100 ms deltas a
#: little faster than real time (1.1x), which is what a busy line's agent receives.
CONTINUOUS_REALTIME_FACTOR = 1.1
CONTINUOUS_DELTA_MS = 100


async def run_local_backend(args: argparse.Namespace) -> int:
    if args.behaviour == "script" and args.script is None:
        raise UsageError("--behaviour script needs --script FILE")
    if args.script is not None and not args.script.is_file():
        raise UsageError(f"--script {args.script}: no such file")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: expected 0 to 65535")
    key = None
    if args.require_key_env:
        key = os.environ.get(args.require_key_env, "").strip()
        if not key:
            raise UsageError(f"--require-key-env {args.require_key_env}: variable is not set")
    configure_logging("info", secrets=[key])
    continuous = args.behaviour == "continuous"
    factor = args.realtime_factor
    if factor is None:
        factor = CONTINUOUS_REALTIME_FACTOR if continuous else 4.0
    try:
        options = BackendOptions(
            behaviour=args.behaviour,
            script_path=args.script,
            dialect=args.dialect,
            models=_models(args.models),
            require_api_key=key,
            realtime_factor=factor,
            delta_ms=CONTINUOUS_DELTA_MS if continuous else BackendOptions.delta_ms,
            first_delta_delay_s=args.first_delta_delay,
            close_mid_response_code=args.close_mid_response,
            session_expire_after_s=args.expire_after,
            inject_errors=args.inject_errors,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(
        f"local Realtime backend on ws://{args.host}:{args.port}/v1/realtime "
        f"({args.behaviour}, {args.dialect} dialect)",
        file=sys.stderr,
        flush=True,
    )
    try:
        await _serve(options, args.host, args.port, args.stats_out)
    except (ScriptError, PhraseError) as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0


async def _serve(options: BackendOptions, host: str, port: int, stats_out: Path | None) -> None:
    """Serve until SIGTERM or SIGINT, then write the stats file (if asked) and close.

    The stats are written before the connections are closed, so a harness that stops
    the backend while calls are still up gets every connection's log.
    """
    running = await start_backend(options, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        if stats_out is not None:
            write_stats(running.stats, stats_out)
        await running.close()


def write_stats(stats: BackendStats, path: Path) -> None:
    """Counters and continuous-talk logs as JSON, renamed into place so no reader sees half."""
    data = {"counters": stats.snapshot(), "talks": [talk.to_json() for talk in stats.talks]}
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data), encoding="utf-8")
    partial.replace(path)


def _models(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise UsageError(f"--models {value!r}: expected model names separated by commas")
    return names
