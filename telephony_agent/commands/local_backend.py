"""`telephony-agent local-backend`: the built-in Realtime server as its own process."""

from __future__ import annotations

import argparse
import os
import sys

from telephony_agent.errors import UsageError
from telephony_agent.logs import configure_logging
from telephony_agent.realtime.backend import (
    BackendOptions,
    PhraseError,
    ScriptError,
    serve_forever,
)


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
    try:
        options = BackendOptions(
            behaviour=args.behaviour,
            script_path=args.script,
            dialect=args.dialect,
            models=_models(args.models),
            require_api_key=key,
            realtime_factor=args.realtime_factor,
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
        await serve_forever(options, args.host, args.port)
    except (ScriptError, PhraseError) as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0


def _models(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise UsageError(f"--models {value!r}: expected model names separated by commas")
    return names
