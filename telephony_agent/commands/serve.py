"""`telephony-agent serve`: answer SIP calls with the agent until stopped.

With no API key the built-in local backend answers (echo by default), so a
gateway can be pointed at a fresh install and heard working before any account
exists. SIGINT/SIGTERM stop taking calls (503), hang up the ones in progress
with BYE, and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from telephony_agent.commands.runtime import open_provider, settings_from_args
from telephony_agent.config import parse_host_port
from telephony_agent.server.health import HealthServer
from telephony_agent.server.sip_server import AgentSipServer


async def run_serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    runtime = await open_provider(settings)
    server = AgentSipServer(settings, runtime.endpoint, runtime.resolved.name)
    health: HealthServer | None = None
    try:
        await server.start()
        host, port = parse_host_port("http.listen", settings.http.listen)
        health = HealthServer(server)
        await health.start(host, port)
        sip_host, _ = parse_host_port("sip.listen", settings.sip.listen)
        shown = server.media_address if sip_host in ("0.0.0.0", "::") else sip_host
        print(
            f"telephony-agent: answering SIP on {sip_host}:{server.sip_port} "
            f"({settings.sip.transports}; dial sip:agent@{shown}:{server.sip_port}), "
            f"health on http://{host}:{health.port}/health, provider {runtime.resolved.name}",
            file=sys.stderr,
            flush=True,
        )
        await _wait_for_stop()
        print("telephony-agent: stopping, hanging up active calls", file=sys.stderr, flush=True)
    finally:
        if health is not None:
            await health.close()
        await server.shutdown()
        await runtime.close()
    return 0


async def _wait_for_stop() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
