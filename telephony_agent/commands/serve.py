"""`telephony-agent serve`: answer SIP and browser calls with the agent until stopped.

With no API key the built-in local backend answers (echo by default), so a
gateway — or the demo page on the HTTP address — can be heard working before any
account exists. The HTTP side also serves `/health`, `/metrics`, `/healthz`,
`/readyz`, the live calls page and WebRTC/WHIP signalling.

Signals:
* SIGTERM or SIGINT drains: new INVITEs get 503 with Retry-After, OPTIONS gets 503
  (a dispatcher marks us down at its next probe), `/readyz` turns 503, and live
  calls go on for up to `[server] drain_timeout_s`. Calls still live then are asked
  to say goodbye and hung up. Then the process exits 0. A second signal ends at once
  (every live call gets BYE).
* SIGHUP re-reads the settings file: new calls get the new profiles and tools, live
  calls keep theirs. A file that fails validation is refused with one log line naming
  the problem, and the running settings stay. Listening addresses, ports and the
  provider are read once at start; changing them needs a restart.

A port already taken, a certificate that cannot be read or a data folder that cannot
be written ends the start with one line naming the key and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import signal
import sys
from collections.abc import Awaitable, Callable

import structlog

from telephony_agent.commands.runtime import (
    ProviderRuntime,
    open_provider,
    settings_from_args,
)
from telephony_agent.commands.serve_workers import run_workers, supervises
from telephony_agent.config import Settings, parse_host_port
from telephony_agent.errors import ConfigError
from telephony_agent.records import RecordReader
from telephony_agent.server.calls_api import CallsReader
from telephony_agent.server.gatekeeper import exposure_warning
from telephony_agent.server.http_app import HttpServer
from telephony_agent.server.http_settings import resolve_http_token, tls_context_from_settings
from telephony_agent.server.operations import Operations
from telephony_agent.server.sip_server import AgentSipServer
from telephony_agent.switchboard import Switchboard
from telephony_agent.switchboard.drain import Drainer
from telephony_agent.switchboard.keeping import Keeping
from telephony_agent.switchboard.load_sampler import LoadSampler
from telephony_agent.trunk.registrations import Registrations
from telephony_agent.workers import worker_settings

log = structlog.get_logger(__name__)


async def run_serve(args: argparse.Namespace) -> int:
    if supervises(args):
        return await run_workers(args, args.workers)
    worker: int | None = getattr(args, "worker", None)
    settings = _settings(args)
    # Resolved before anything starts: a configured but missing token, or a certificate
    # that cannot be read, must stop us here.
    token = resolve_http_token(settings)
    tls = tls_context_from_settings(settings)
    runtime = await open_provider(settings)
    http: HttpServer | None = None
    server: AgentSipServer | None = None
    board: Switchboard | None = None
    keeping: Keeping | None = None
    sampler: LoadSampler | None = None
    try:
        board = Switchboard(runtime.deployment(settings))
        keeping = await Keeping.open(settings, worker=worker)
        keeping.attach(board)
        server = AgentSipServer(board)
        records = keeping.open_reader()
        calls_reader = CallsReader(records) if records is not None else None
        operations = Operations.attach(
            board,
            sip=server,
            records_health=keeping.health,
            records_ping=_records_ping(records) if records is not None else None,
            registrations=lambda: _registrations_up(server),
        )
        # Built first: it checks [webrtc] (ICE servers, TURN credential) before anything listens.
        http = HttpServer(
            board,
            sip=server,
            token=token,
            calls_reader=calls_reader,
            health_extra=lambda: _health_extra(keeping, server),
            operations=operations,
            tls=tls,
        )
        await _listen("sip.listen", settings.sip.listen, server.start())
        if settings.registrations:
            # After the listeners: each Contact carries the address they are bound to.
            server.registrations = Registrations(server.endpoint, settings.registrations)
            server.registrations.start()
        host, port = parse_host_port("http.listen", settings.http.listen)
        await _listen("http.listen", settings.http.listen, http.start(host, port))
        _announce(settings, board, server, http, runtime, token=token)
        exposure = exposure_warning(settings, server.gate)
        if exposure:
            log.warning("sip_open_to_everyone", listen=settings.sip.listen)
            print(f"telephony-agent: warning: {exposure}", file=sys.stderr, flush=True)
        # Once serving: start-up work (imports, the records database) is no call's load.
        # It measures with [admission] off too, for /health and /metrics.
        sampler = LoadSampler(board)
        sampler.start()
        # Everything imported and built so far lives as long as the process: moved out
        # of the collector's generations, a full collection no longer walks it, which
        # kept the media tick waiting for ~12 ms whenever one ran under load.
        gc.freeze()
        await _serve_until_stopped(args, board, runtime, settings)
        if server.registrations is not None:
            # Drained: nobody should send us new calls any more.
            await server.registrations.stop()
        print("telephony-agent: stopping, hanging up active calls", file=sys.stderr, flush=True)
    finally:
        if sampler is not None:
            await sampler.stop()
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


def _settings(args: argparse.Namespace) -> Settings:
    """The settings file with the command line's overrides; a worker's own ports on top."""
    settings = settings_from_args(args)
    worker: int | None = getattr(args, "worker", None)
    if worker is None:
        return settings
    return worker_settings(settings, worker, getattr(args, "workers", 1))


def _health_extra(keeping: Keeping | None, server: AgentSipServer | None) -> dict[str, object]:
    extra: dict[str, object] = dict(keeping.health()) if keeping is not None else {}
    if server is not None:
        extra["access"] = server.gate.health()
    if server is not None and server.registrations is not None:
        extra["registrations"] = server.registrations.status()
    return extra


def _registrations_up(server: AgentSipServer | None) -> dict[str, bool]:
    """name → registered, for the registration metrics."""
    if server is None or server.registrations is None:
        return {}
    return {
        name: status.get("state") == "registered"
        for name, status in server.registrations.status().items()
    }


def _records_ping(records: RecordReader) -> Callable[[], Awaitable[object]]:
    """A one-row query on the reader's worker thread: is the records database there."""

    async def ping() -> object:
        return await records.alist_calls(limit=1)

    return ping


async def _listen(key: str, value: str, starting: Awaitable[object]) -> None:
    """Await a listener's start; a port we cannot have is one line naming the key."""
    try:
        await starting
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            why = "address already in use (another serve, or a PBX, listens there)"
        elif exc.errno == errno.EACCES:
            why = "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            why = "this machine has no such address"
        else:
            why = exc.strerror or str(exc)
        raise ConfigError(f"{key} = {value!r}: cannot listen there: {why}") from None


def _announce(
    settings: Settings,
    board: Switchboard,
    server: AgentSipServer,
    http: HttpServer,
    runtime: ProviderRuntime,
    *,
    token: str | None,
) -> None:
    """The start line: what listens where (stderr for people, a log line for machines)."""
    host, _ = parse_host_port("http.listen", settings.http.listen)
    sip_host, _ = parse_host_port("sip.listen", settings.sip.listen)
    shown = server.media_address if sip_host in ("0.0.0.0", "::") else sip_host
    # A browser grants the microphone only to a secure context: loopback qualifies.
    page_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    scheme = "https" if http.tls is not None else "http"
    guarded = " (signalling needs the bearer token)" if token else ""
    profiles = ", ".join(p.name for p in board.deployment.profiles.profiles)
    rtp = f"{settings.rtp.port_min}-{settings.rtp.port_max}"
    print(
        f"telephony-agent: answering SIP on {sip_host}:{server.sip_port} "
        f"({settings.sip.transports}; dial sip:agent@{shown}:{server.sip_port}), "
        f"health on {scheme}://{host}:{http.port}/health, "
        f"browser calls on {scheme}://{page_host}:{http.port}/{guarded}, "
        f"metrics on {scheme}://{host}:{http.port}/metrics, RTP on UDP {rtp}, "
        f"provider {runtime.resolved.name}, profiles: {profiles}"
        + "".join(
            f", registering {r.aor} at {r.registrar}" for r in settings.registrations if r.register
        ),
        file=sys.stderr,
        flush=True,
    )
    endpoint = server.endpoint
    log.info(
        "service_started",
        sip_udp=_address(endpoint.udp_address),
        sip_tcp=_address(endpoint.tcp_address),
        sip_tls=_address(endpoint.tls_address),
        media_address=server.media_address,
        rtp_ports=rtp,
        http=f"{scheme}://{host}:{http.port}",
        metrics=f"{scheme}://{host}:{http.port}/metrics",
        live_page=f"{scheme}://{page_host}:{http.port}/live",
        provider=runtime.resolved.name,
        profiles=[p.name for p in board.deployment.profiles.profiles],
        max_calls=board.max_calls,
        drain_timeout_s=settings.server.drain_timeout_s,
    )


def _address(address: tuple[str, int] | None) -> str | None:
    return None if address is None else f"{address[0]}:{address[1]}"


async def _serve_until_stopped(
    args: argparse.Namespace, board: Switchboard, runtime: ProviderRuntime, settings: Settings
) -> None:
    """Run until a stop signal, then drain; a second stop signal cuts the drain short."""
    stop = asyncio.Event()
    force = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_stop() -> None:
        if stop.is_set():
            if not force.is_set():
                print("telephony-agent: stopping now", file=sys.stderr, flush=True)
            force.set()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_stop)
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload(args, board, runtime))
    await stop.wait()
    server = settings.server
    if board.active_calls:
        print(
            f"telephony-agent: draining: {board.active_calls} call(s) may go on for up to "
            f"{server.drain_timeout_s:g} s (signal again to stop now)",
            file=sys.stderr,
            flush=True,
        )
    drainer = Drainer(
        board,
        timeout_s=server.drain_timeout_s,
        goodbye_instructions=server.drain_goodbye_instructions,
    )
    await drainer.run(force)


def _reload(args: argparse.Namespace, board: Switchboard, runtime: ProviderRuntime) -> None:
    """Re-read the settings file; on any error keep what runs and say why in one line."""
    try:
        settings = _settings(args)
        deployment = runtime.deployment(settings)
    except ConfigError as exc:
        log.error("reload_refused", error=str(exc))
        return
    board.reload(deployment)
