"""`telephony-agent serve`: answer SIP and browser calls with the agent until stopped.

With no API key the built-in local backend answers (echo by default), so a
gateway — or the demo page on the HTTP address — can be heard working before any
account exists. The HTTP side also serves `/health` and WebRTC/WHIP signalling.

Signals:
* SIGINT/SIGTERM stop taking calls (503), hang up the ones in progress (BYE for SIP,
  a closed peer connection for browsers), and exit 0.
* SIGHUP re-reads the settings file: new calls get the new profiles and tools, live
  calls keep theirs. A file that fails validation is refused with one log line naming
  the problem, and the running settings stay. Listening addresses, ports and the
  provider are read once at start; changing them needs a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

import structlog

from telephony_agent.commands.runtime import (
    ProviderRuntime,
    open_provider,
    settings_from_args,
)
from telephony_agent.config import parse_host_port
from telephony_agent.errors import ConfigError
from telephony_agent.server.calls_api import CallsReader
from telephony_agent.server.gatekeeper import exposure_warning
from telephony_agent.server.http_app import HttpServer
from telephony_agent.server.http_settings import resolve_http_token
from telephony_agent.server.sip_server import AgentSipServer
from telephony_agent.switchboard import Switchboard
from telephony_agent.switchboard.keeping import Keeping
from telephony_agent.trunk.registrations import Registrations

log = structlog.get_logger(__name__)


async def run_serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    # Resolved before anything starts: a configured but missing token must stop us here.
    token = resolve_http_token(settings)
    runtime = await open_provider(settings)
    http: HttpServer | None = None
    server: AgentSipServer | None = None
    board: Switchboard | None = None
    keeping: Keeping | None = None
    try:
        board = Switchboard(runtime.deployment(settings))
        keeping = await Keeping.open(settings)
        keeping.attach(board)
        server = AgentSipServer(board)
        # Built first: it checks [webrtc] (ICE servers, TURN credential) before anything listens.
        records = keeping.open_reader()
        calls_reader = CallsReader(records) if records is not None else None
        http = HttpServer(
            board,
            sip=server,
            token=token,
            calls_reader=calls_reader,
            health_extra=lambda: _health_extra(keeping, server),
        )
        await server.start()
        if settings.registrations:
            # After the listeners: each Contact carries the address they are bound to.
            server.registrations = Registrations(server.endpoint, settings.registrations)
            server.registrations.start()
        host, port = parse_host_port("http.listen", settings.http.listen)
        await http.start(host, port)
        sip_host, _ = parse_host_port("sip.listen", settings.sip.listen)
        shown = server.media_address if sip_host in ("0.0.0.0", "::") else sip_host
        # A browser grants the microphone only to a secure context: loopback qualifies.
        page_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        guarded = " (signalling needs the bearer token)" if token else ""
        profiles = ", ".join(p.name for p in board.deployment.profiles.profiles)
        print(
            f"telephony-agent: answering SIP on {sip_host}:{server.sip_port} "
            f"({settings.sip.transports}; dial sip:agent@{shown}:{server.sip_port}), "
            f"health on http://{host}:{http.port}/health, "
            f"browser calls on http://{page_host}:{http.port}/{guarded}, "
            f"provider {runtime.resolved.name}, profiles: {profiles}"
            + "".join(
                f", registering {r.aor} at {r.registrar}"
                for r in settings.registrations
                if r.register
            ),
            file=sys.stderr,
            flush=True,
        )
        exposure = exposure_warning(settings, server.gate)
        if exposure:
            log.warning("sip_open_to_everyone", listen=settings.sip.listen)
            print(f"telephony-agent: warning: {exposure}", file=sys.stderr, flush=True)
        await _serve_until_stopped(args, board, runtime)
        print("telephony-agent: stopping, hanging up active calls", file=sys.stderr, flush=True)
    finally:
        if http is not None:
            await http.close()
        if server is not None:
            await server.shutdown()
        if board is not None:
            await board.close()
        if keeping is not None:
            await keeping.close()
        await runtime.close()
    return 0


def _health_extra(keeping: Keeping | None, server: AgentSipServer | None) -> dict[str, object]:
    extra: dict[str, object] = dict(keeping.health()) if keeping is not None else {}
    if server is not None:
        extra["access"] = server.gate.health()
    if server is not None and server.registrations is not None:
        extra["registrations"] = server.registrations.status()
    return extra


async def _serve_until_stopped(
    args: argparse.Namespace, board: Switchboard, runtime: ProviderRuntime
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload(args, board, runtime))
    await stop.wait()


def _reload(args: argparse.Namespace, board: Switchboard, runtime: ProviderRuntime) -> None:
    """Re-read the settings file; on any error keep what runs and say why in one line."""
    try:
        settings = settings_from_args(args)
        deployment = runtime.deployment(settings)
    except ConfigError as exc:
        log.error("reload_refused", error=str(exc))
        return
    board.reload(deployment)
